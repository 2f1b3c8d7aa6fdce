"""`promote` rewrites the operator's config file as a round trip: only the promoted values change."""

from __future__ import annotations

from pathlib import Path

import yaml

from proxy.promotion import _set_options, _swap_in, rewrite_config

CONFIG = """\
# guardstream config for team A (owner: ops@example.com)
server:
  port: 8080   # behind the ingress
evaluators:
  live:
    type: classifier
    options: {threshold: 0.8}   # tuned 2026-11
  cand:
    type: classifier
    options:
      path: "models/candidate"
policies:
  default:
    input:
      # the learned judge first, then the rules
      evaluators: [live, rules]
      shadow: [cand]
    output:
      evaluators: ['live']
long_note: "a value longer than eighty characters stays on one line instead of being folded by the dumper at all"
"""


def _changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_a_shadow_swap_keeps_every_comment_and_changes_only_its_lines(tmp_path: Path) -> None:
    config = tmp_path / "guardstream.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    diff, backup = rewrite_config(
        config, lambda raw: _swap_in(raw, "cand", "live", [("default", "input"), ("default", "output")]))
    new_text = config.read_text(encoding="utf-8")
    for comment in ("# guardstream config for team A", "# behind the ingress", "# tuned 2026-11",
                    "# the learned judge first"):
        assert comment in new_text
    assert "long_note: \"a value longer than eighty characters" in new_text  # not re-wrapped, quotes kept
    changed = _changed_lines(diff)
    assert all("evaluators" in line or "shadow" in line for line in changed), changed
    assert yaml.safe_load(new_text)["policies"]["default"] == {
        "input": {"evaluators": ["cand", "rules"]}, "output": {"evaluators": ["cand"]}}
    assert backup is not None and backup.read_text(encoding="utf-8") == CONFIG


def test_new_options_change_only_the_options(tmp_path: Path) -> None:
    config = tmp_path / "guardstream.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    diff, _ = rewrite_config(config, lambda raw: _set_options(raw, "live", {"path": "models/v2", "threshold": 0.7}),
                             write=False)
    assert config.read_text(encoding="utf-8") == CONFIG  # write=False leaves the file alone
    assert len([line for line in _changed_lines(diff) if line.startswith("-")]) == 1
    after = yaml.safe_load("".join(line[1:] + "\n" for line in diff.splitlines()[2:]
                                   if line[:1] in " +" and not line.startswith("+++")))
    assert after["evaluators"]["live"]["options"] == {"path": "models/v2", "threshold": 0.7}
