"""The machine and software a run measured: CPU, cores, RAM, kernel, Python, package and tool versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("aiohttp", "uvloop", "yarl", "multidict", "pydantic", "structlog", "prometheus-client", "matplotlib")


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        return round(int(m.group(1)) / 1024 / 1024, 1) if m else 0.0
    except OSError:
        return 0.0


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def tool_versions(litellm_venv: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    out["nginx"] = _run([nginx, "-v"]).replace("nginx version: ", "") if nginx else "not installed"
    out["wrk"] = _run(["wrk", "--version"]).splitlines()[0].split(" Copyright")[0] if shutil.which("wrk") else \
        "not installed"
    py = litellm_venv / "bin" / "python"
    if py.exists():
        code = ("import importlib.metadata as m, platform; print(platform.python_version(), "
                "*[m.version(p) for p in ('litellm', 'uvicorn', 'fastapi', 'uvloop')])")
        parts = _run([str(py), "-c", code]).split()
        if len(parts) == 5:
            out["litellm"] = f"{parts[1]} (own venv, Python {parts[0]}; uvicorn {parts[2]}, fastapi {parts[3]}, " \
                             f"uvloop {parts[4]})"
    out.setdefault("litellm", "not installed")
    return out


def git_commit(repo: Path) -> str:
    commit = _run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"])
    return commit + (" (with uncommitted changes)" if dirty else "")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def describe(repo: Path, litellm_venv: Path) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "kernel": f"{platform.system()} {platform.release()}",
        "versions": versions(),
        "tools": tool_versions(litellm_venv),
        "commit": git_commit(repo),
        "load_before": load_average(),
    }
