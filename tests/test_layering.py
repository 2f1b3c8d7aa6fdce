"""The rooms' boundaries, checked on the imports (an AST scan, lazy imports inside functions included):

- evaluators import nothing from `proxy` or `consumers` (they know nothing of HTTP, Redis or Kafka, nor of the
  proxy's config file: the commands that read or rewrite it are the proxy's, under proxy/commands/);
- consumers import from `proxy` only the shared contracts in `proxy.schemas` (the audit event model, their
  config section and the config file's mechanics);
- `proxy.schemas` imports nothing else from the project (both sides may import it).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SHARED_CONTRACTS = "proxy.schemas"


def imported_modules(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import in `path`, at any depth; relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # `from proxy import metrics` imports proxy.metrics
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base in ("proxy", "consumers")]
    return found


def sources(room: str) -> list[Path]:
    return sorted(p for p in (ROOT / room).rglob("*.py") if ".venv" not in p.parts)


def violations(room: str, allowed: Callable[[str, str], bool]) -> list[str]:
    out = []
    for path in sources(room):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in imported_modules(path):
            if not allowed(rel, module):
                out.append(f"{rel}:{line} imports {module}")
    return out


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_evaluators_import_nothing_from_the_proxy_or_the_consumers() -> None:
    def allowed(rel: str, module: str) -> bool:
        return not (_is(module, "proxy") or _is(module, "consumers"))

    assert violations("evaluators", allowed) == []


def test_consumers_import_only_the_shared_contracts_from_the_proxy() -> None:
    def allowed(rel: str, module: str) -> bool:
        return not _is(module, "proxy") or module == "proxy" or _is(module, SHARED_CONTRACTS)

    assert violations("consumers", allowed) == []


@pytest.mark.parametrize("room", ["proxy/schemas", "proxy/__init__.py"])
def test_the_shared_contracts_import_nothing_else_from_the_project(room: str) -> None:
    paths = [ROOT / room] if room.endswith(".py") else sources(room)
    bad = [f"{p.relative_to(ROOT)}:{line} imports {m}" for p in paths for line, m in imported_modules(p)
           if any(_is(m, pkg) for pkg in ("proxy", "evaluators", "consumers", "bench"))
           and not _is(m, SHARED_CONTRACTS)]
    assert bad == []


def test_the_scan_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from proxy.metrics import REGISTRY\n    from . import base\n"
                     "    from proxy import metrics\n")
    assert [m for _, m in imported_modules(probe, "evaluators")] == [
        "proxy.metrics", "evaluators", "proxy", "proxy.metrics"]


def test_evaluator_metrics_are_served_on_the_proxys_registry() -> None:
    from prometheus_client import generate_latest

    import evaluators.llama_guard.metrics  # noqa: F401  # defines the counters on the evaluators' registry
    from proxy.config import Settings
    from proxy.metrics import REGISTRY
    from proxy.state import build_evaluators

    build_evaluators(Settings())
    build_evaluators(Settings())  # a second proxy in the same process does not serve them twice
    served = generate_latest(REGISTRY).decode()
    assert served.count("# TYPE guardstream_llama_guard_parse_errors_total counter") == 1
