"""Profiles guardstream's hot path under load with py-spy and summarises where the CPU goes.

py-spy samples the running proxy process from outside (no code change, no
restart); idle samples (waiting in epoll) are left out, so percentages are
shares of the proxy's busy CPU time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench import drivers
from bench.load import LoadSpec
from bench.targets import Env, Row, launch

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else None


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) output: `frame;frame;... count` per line."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def frame_name(frame: str) -> str:
    """`func (file:line)` without the line number, so one function is one entry."""
    m = FRAME.match(frame.strip())
    return f"{m.group('func')} ({m.group('file')})" if m else frame.strip()


def area(frame: str) -> str:
    """Who owns a frame: our package (proxy/, evaluators/), a library, or the standard library."""
    m = FRAME.match(frame.strip())
    path = m.group("file") if m else frame
    top = path.split("/", 1)[0] if "/" in path else path.rsplit(".", 1)[0]
    if top in ("proxy", "evaluators", "tests", "bench"):
        return path
    return top


def summarise(stacks: list[tuple[list[str], int]], top: int = 15) -> dict[str, Any]:
    total = sum(c for _, c in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, count in stacks:
        own[frame_name(frames[-1])] += count
        areas[area(frames[-1])] += count
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += count
    ours = Counter({k: v for k, v in inclusive.items() if re.search(r"\((proxy|evaluators)/", k)
                    and not re.search(r"\(proxy/(cli\.py|commands/)", k)})  # the entry point holds everything

    def table(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "self": table(own), "inclusive_ours": table(ours), "areas": table(areas)}


def profile_guardstream(env: Env, opts: Any, row: Row, concurrency: int = 32) -> dict[str, Any]:
    """Start the row, load it at `concurrency`, record `opts.profile_s` seconds with py-spy, summarise."""
    binary = py_spy()
    if binary is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    running = launch(row, env)
    try:
        spec = LoadSpec(url=running.url, concurrency=concurrency, duration_s=opts.profile_s + 2, unique=row.unique,
                        api_key=running.api_key, prompt_bytes=opts.prompt_bytes, stream=row.stream)
        driver = "asyncio" if row.stream else opts.plain_driver()
        drivers.warm_up(spec, driver, env.placement.client, env.workdir, min(2.0, opts.warmup_s))
        out = env.workdir / "py-spy.txt"
        argv = [binary, "record", "--pid", str(running.group.procs[0].pid), "--duration", str(int(opts.profile_s)),
                "--rate", "250", "--format", "raw", "--nonblocking", "--output", str(out)]
        load: dict[str, Any] = {}
        loader = threading.Thread(target=lambda: load.update(drivers.run_point(spec, driver, env.placement.client,
                                                                                env.workdir)))
        loader.start()
        spy = subprocess.run(argv, capture_output=True, text=True, timeout=opts.profile_s + 60)
        loader.join()
        if spy.returncode != 0 or not out.exists():
            return {"skipped": f"py-spy failed: {spy.stderr[-400:]}"}
        summary = summarise(parse_collapsed(out.read_text()))
        summary.update(row=row.key, concurrency=concurrency, rps=load.get("rps"),
                       command=" ".join(["py-spy", "record", "--pid", "<guardstream pid>", *argv[4:-2],
                                         "--output", "FILE"]))
        return summary
    finally:
        running.group.stop()

