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


# -- every shape `guardstream export` writes ------------------------------------------------

SYSTEM = {"role": "system", "content": "You are terse."}
ASK = {"role": "user", "content": "how do I pick a lock?"}


def test_conversational_kto_rows_as_export_writes_them(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "kto.jsonl", [
        {"prompt": [SYSTEM, ASK], "completion": [], "label": False},                       # input stage, unsafe
        {"prompt": [SYSTEM, ASK], "completion": [{"role": "assistant", "content": "I can't help."}],
         "label": True},                                                                   # output stage, safe
        {"prompt": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}], "completion": [],
         "label": True},
    ])
    first, second, parts = load_rows(path)
    assert first.unsafe and first.text == "how do I pick a lock?" and first.stage() == "input"
    item = first.to_item()
    assert item.stage == "input" and [t.role for t in item.turns] == ["system", "user"]
    assert item.text == "how do I pick a lock?"
    assert not second.unsafe and second.text == "I can't help." and second.prompt == "how do I pick a lock?"
    item = second.to_item()
    assert item.stage == "output" and [t.role for t in item.turns] == ["system", "user", "assistant"]
    assert parts.text == "parts" and not parts.unsafe


def test_dpo_pairs_read_chosen_safe_rejected_unsafe(tmp_path: Path) -> None:
    pick = {"role": "assistant", "content": "Use a tension wrench."}
    refuse = {"role": "assistant", "content": "I can't help."}
    polite = {"role": "assistant", "content": "Call a locksmith."}
    path = _jsonl(tmp_path / "dpo.jsonl", [
        {"prompt": [ASK], "chosen": [refuse], "rejected": [pick]},
        {"prompt": [ASK], "chosen": [polite], "rejected": [pick]},           # the rejected answer again: read once
        {"chosen": [ASK, refuse], "rejected": [ASK, pick]},                   # implicit prompt
        {"prompt": "plain?", "chosen": "yes", "rejected": "no"},
    ])
    rows = load_rows(path)
    assert [(r.text, r.unsafe) for r in rows] == [
        ("I can't help.", False), ("Use a tension wrench.", True), ("Call a locksmith.", False),
        ("yes", False), ("no", True)]
    assert rows[0].group == rows[1].group == rows[2].group and rows[0].to_item().stage == "output"


def test_llama_guard_rows_are_read_back_into_conversations(tmp_path: Path) -> None:
    from consumers.llama_guard_render import render_llama_guard_prompt

    answer = {"role": "assistant", "content": "Use a tension wrench.\n\nThen rake the pins."}
    path = _jsonl(tmp_path / "lg.jsonl", [
        {"prompt": render_llama_guard_prompt([SYSTEM, ASK], "input"), "completion": "\n\nunsafe\nS2"},
        {"prompt": render_llama_guard_prompt([ASK, answer], "output"), "completion": "\n\nsafe"},
        {"prompt": render_llama_guard_prompt([ASK], "input"), "completion": "safe"},   # older export: no gap
    ])
    prompt_row, answer_row, old = load_rows(path)
    assert prompt_row.unsafe and prompt_row.categories == ("S2",) and prompt_row.stage() == "input"
    assert prompt_row.text == "how do I pick a lock?"
    assert not answer_row.unsafe and answer_row.text == "Use a tension wrench.\n\nThen rake the pins."
    assert answer_row.prompt == "how do I pick a lock?" and answer_row.to_item().stage == "output"
    assert not old.unsafe


@pytest.mark.parametrize("row, field", [
    ({"prompt": [{"content": "no role"}], "completion": [], "label": True}, "'prompt'"),
    ({"prompt": {"role": "user"}, "label": True}, "'prompt'"),
    ({"prompt": [ASK], "completion": [{"role": "assistant", "content": 5}], "label": True}, "'completion'"),
    ({"prompt": [], "completion": [], "label": True}, "'prompt'"),
    ({"prompt": [ASK], "chosen": [], "rejected": [{"role": "assistant", "content": "x"}]}, "'chosen'"),
    ({"prompt": "<BEGIN CONVERSATION>\n\nUser: hi\n\n<END CONVERSATION> ONLY THE LAST User message",
      "completion": "maybe"}, "'completion'"),
    ({"prompt": "<BEGIN CONVERSATION>\n\nhi\n\n<END CONVERSATION> ONLY THE LAST User message",
      "completion": "\n\nsafe"}, "'prompt'"),
])
def test_unreadable_shapes_fail_with_file_row_and_field(tmp_path: Path, row: dict, field: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"text": "fine", "label": 0}, row])
    with pytest.raises(DataError) as info:
        load_rows(path)
    message = str(info.value)
    assert message.startswith(f"{path}:2: field {field}") and "\n" not in message
