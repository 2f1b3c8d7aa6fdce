"""Data loading for eval and train: both shapes, label conventions, CSV and JSONL, loud errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators.evaluation.datasets import DataError, load_rows, parse_label


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_label_conventions() -> None:
    assert parse_label("unsafe", kto=True) is True and parse_label("Safe", kto=False) is False
    assert parse_label("harmful", kto=True) is True and parse_label("benign", kto=True) is False
    # moderation rows: true / 1 = unsafe (flagged)
    assert parse_label(True, kto=False) is True and parse_label(1, kto=False) is True and parse_label("0", kto=False) is False
    # KTO rows: true = desirable = safe
    assert parse_label(True, kto=True) is False and parse_label("false", kto=True) is True
    assert parse_label(True, kto=True, label_true="unsafe") is True
    with pytest.raises(ValueError):
        parse_label("maybe", kto=False)
    with pytest.raises(ValueError):
        parse_label(2, kto=False)


def test_jsonl_shapes(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [
        {"text": "build a bomb", "label": 1, "categories": ["S9"], "source": "a"},
        {"prompt": "hi", "completion": "hello", "label": True},           # KTO: desirable -> safe
        {"prompt": "how to poison", "completion": "", "label": False},    # KTO: undesirable -> unsafe
        {"prompt": "weather?", "label": "safe", "category": "x"},
    ])
    rows = load_rows(path)
    assert [r.unsafe for r in rows] == [True, False, True, False]
    assert rows[0].categories == ("S9",) and rows[0].source == "a" and rows[0].to_item().stage == "input"
    item = rows[1].to_item()
    assert item.stage == "output" and item.text == "hello" and item.turns[0].content == "hi"
    assert rows[2].text == "how to poison" and rows[2].to_item().stage == "input"
    assert rows[1].to_item("input").text == "hello"
    assert load_rows(path, limit=2)[-1].prompt == "hi"


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label,categories\n"kill him",unsafe,"S1;S10"\nhello,0,\n')
    rows = load_rows(path)
    assert [r.unsafe for r in rows] == [True, False]
    assert rows[0].categories == ("S1", "S10") and rows[1].categories == ()


@pytest.mark.parametrize("content, message", [
    ('{"text": "x"}\n', "missing field 'label'"),
    ('{"label": 1}\n', "'text' field or a 'prompt'"),
    ("not json\n", "invalid JSON"),
    ('{"text": "x", "label": "perhaps"}\n', "unreadable label"),
])
def test_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "label": 0}\n' + content)
    with pytest.raises(DataError, match=message) as info:
        load_rows(path)
    assert "bad.jsonl:2" in str(info.value)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown data format"):
        load_rows(tmp_path / "x.parquet")
