"""`guardstream check-data` end to end on JSONL (as a subprocess) and CSV files."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main
from tests.dq_series import FAULTS, rules_yaml, series

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["device_id", "ts", "speed", "battery", "lat", "min_temp", "max_temp", "status", "note"]


@pytest.fixture()
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(rules_yaml())
    return path


def write_jsonl(path: Path, records) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


def write_csv(path: Path, records) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for record in records:
            writer.writerow(record)


def test_jsonl_end_to_end_subprocess(tmp_path: Path, rules_path: Path) -> None:
    data = tmp_path / "telemetry.jsonl"
    write_jsonl(data, series(1200))
    with open(data, "a") as fh:
        fh.write("{not json\n")
    data.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())  # a byte order mark must not break line 0
    accepted, rejected, summary = tmp_path / "ok.jsonl", tmp_path / "bad.jsonl", tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check-data", str(data), "--rules", str(rules_path),
         "--accepted", str(accepted), "--rejected", str(rejected), "--summary-json", str(summary)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 1, proc.stderr
    for rule, field in FAULTS.values():
        assert rule in proc.stdout and field in proc.stdout
    assert "records 1,201  accepted 1,191  rejected 10" in proc.stdout

    bad = [json.loads(line) for line in rejected.read_text().splitlines()]
    assert [(b["index"], b["failures"][0]["rule"]) for b in bad] == \
        [(i, rule) for i, (rule, _) in sorted(FAULTS.items())] + [(1200, "parse")]
    assert bad[0]["record"]["device_id"] == "dev-b" and bad[-1]["line"] == "{not json"
    ok_lines = accepted.read_text().splitlines()
    original = data.read_text().splitlines()
    assert len(ok_lines) == 1191 and ok_lines[0] == original[0].lstrip("\ufeff")  # written back unchanged
    stats = json.loads(summary.read_text())
    assert (stats["records"], stats["accepted"], stats["rejected"]) == (1201, 1191, 10)
    assert stats["failures"]["rate:speed"] == 1 and stats["failures"]["parse:row"] == 1


def test_csv_end_to_end(tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "telemetry.csv"
    write_csv(data, series(1200))
    accepted, rejected = tmp_path / "ok.csv", tmp_path / "bad.csv"
    code = main(["check-data", str(data), "--rules", str(rules_path), "--accepted", str(accepted),
                 "--rejected", str(rejected), "--no-progress"])
    assert code == 1
    # a CSV cannot tell a missing value from a null one: the empty cell at 101 is a null
    expected = {i: ("null", "battery") if i == 101 else rf for i, rf in FAULTS.items()}
    with open(rejected, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["_index"]) for r in rows] == sorted(expected)
    for row in rows:
        rule, field = expected[int(row["_index"])]
        assert row["_failures"].startswith(f"{rule}:{field}: ")
    with open(accepted, newline="") as fh:
        ok = list(csv.reader(fh))
    with open(data, newline="") as fh:
        original = list(csv.reader(fh))
    assert ok[0] == COLUMNS and len(ok) == 1 + 1200 - len(FAULTS) and ok[1] == original[1]
    assert "rejected 9" in capsys.readouterr().out


def test_clean_gzip_file_exits_zero(tmp_path: Path, rules_path: Path) -> None:
    data = tmp_path / "clean.jsonl.gz"
    write_jsonl(data, series(500, faults=False))
    accepted = tmp_path / "ok.jsonl.gz"
    assert main(["check-data", str(data), "--rules", str(rules_path), "--accepted", str(accepted)]) == 0
    with gzip.open(accepted, "rt") as fh:
        assert sum(1 for _ in fh) == 500


@pytest.mark.parametrize("case", ["bad_rules", "missing_file", "unknown_format", "no_csv_header", "overwrite",
                                  "json_array"])
def test_bad_input_or_rules_exit_two(tmp_path: Path, rules_path: Path, case: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    write_jsonl(data, series(5, faults=False))
    rules = rules_path
    if case == "bad_rules":
        rules = tmp_path / "bad.yaml"
        rules.write_text(rules_yaml().replace("max: 70", "max: seventy"))
    elif case == "missing_file":
        data = tmp_path / "absent.jsonl"
    elif case == "unknown_format":
        data = data.rename(tmp_path / "d.parquet")
    elif case == "json_array":
        data = tmp_path / "array.json"
        data.write_text(json.dumps(list(series(5, faults=False)), indent=2))
    elif case == "no_csv_header":
        data = tmp_path / "empty.csv"
        data.write_text("")
    extra = ["--accepted", str(data)] if case == "overwrite" else []
    assert main(["check-data", str(data), "--rules", str(rules), *extra]) == 2
    err = " ".join(capsys.readouterr().err.split())
    if case == "overwrite":
        assert "would overwrite" in err and data.read_text().count("\n") == 5
    if case == "json_array":
        assert "jq -c" in err
    if case == "bad_rules":
        assert "bad.yaml:5:" in err and "fields.speed.max" in err
