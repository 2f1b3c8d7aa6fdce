"""A finetune artifact as an evaluator: on its own (`artifact:DIR` in `guardstream eval`), or as the candidate
that would replace a configured evaluator (`guardstream promote`), keeping that evaluator's deployment
options (backend, server URL, threshold, batching) and pointing it at the new weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evaluators.finetune.manifest import ArtifactError, read_manifest, weights_digest

#: options an artifact decides (what was trained); everything else stays as the live evaluator has it
TRAINED_OPTIONS = {
    "llama_guard": ("adapter", "categories", "exclude", "prompt_format", "model_size", "max_prompt_tokens",
                    "max_chars"),
    "classifier": ("path",),
}


def artifact_evaluator(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(evaluator type, options) that serve the artifact as it was measured."""
    manifest = read_manifest(path)
    spec = manifest.get("evaluator") or {}
    if spec.get("type") not in TRAINED_OPTIONS:
        raise ArtifactError(f"{path}: a {manifest.get('kind')} artifact is served by the {spec.get('type')!r} "
                            f"evaluator, which guardstream eval/promote cannot build yet")
    return str(spec["type"]), dict(spec.get("options") or {})


def candidate_options(path: str | Path, live_type: str, live_options: Mapping[str, Any]) -> dict[str, Any]:
    """The live evaluator's options with the artifact's trained ones put in (one-line errors on a mismatch)."""
    kind, trained = artifact_evaluator(path)
    if kind != live_type:
        raise ArtifactError(f"{path} is served by a {kind} evaluator, the live one is {live_type}")
    options = dict(live_options)
    for key in TRAINED_OPTIONS[kind]:
        if key in trained:
            options[key] = trained[key]
        else:
            options.pop(key, None)
    if kind == "llama_guard":
        _check_base(path, options)
        if options.get("backend", "openai_http") == "openai_http":
            # the server loads the adapter under a name (--lora-modules NAME=DIR); the request names it
            options["adapter_name"] = live_options.get("adapter_name") or Path(str(options["adapter"])).parent.name
    return options


def _check_base(path: str | Path, options: Mapping[str, Any]) -> None:
    """An adapter only fits the weights it was trained on: a local live model must be the same weights."""
    base = read_manifest(path)["base_model"]
    model = Path(str(options.get("model", "")))
    if model.is_dir() and weights_digest(model) != base["weights_sha256"]:
        raise ArtifactError(f"{path} was trained on {base['path']} (weights {base['weights_sha256'][:12]}); "
                            f"the live evaluator's model {model} has other weights")
