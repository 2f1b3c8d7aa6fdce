"""The benchmark upstream: `proxy.demo_upstream.DemoUpstream` in its own process, on uvloop.

    python -m bench.upstream --port 9000 --answer-bytes 1024 --chunks 32 --chunk-delay-ms 5

Every answer is the same fixed text of `--answer-bytes` bytes; streamed answers
come in `--chunks` content chunks with `--chunk-delay-ms` between them.
Non-streamed answers ignore the chunk settings.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from bench._loop import install_uvloop

SENTENCE = "Here is a short, helpful answer to your question. "


def fixed_answer(size: int) -> str:
    """Plain English text of exactly `size` bytes (nothing a rule evaluator would flag)."""
    return (SENTENCE * (size // len(SENTENCE) + 1))[:size]


async def serve(port: int, answer_bytes: int, chunks: int, chunk_delay_ms: float, host: str = "127.0.0.1",
                delay_ms: float = 0.0) -> None:
    from proxy.demo_upstream import DemoUpstream

    text = fixed_answer(answer_bytes)

    def answer(body: dict[str, Any]) -> str:
        return text

    upstream = DemoUpstream(answer=answer, chunks=chunks, chunk_delay_s=chunk_delay_ms / 1000, record=False,
                            delay_s=delay_ms / 1000)
    runner, url = await upstream.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"bench upstream listening on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer-bytes", type=int, default=1024, help="size of the fixed answer")
    parser.add_argument("--chunks", type=int, default=32, help="content chunks per streamed answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=2.0, help="delay between streamed chunks")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before answering (a slower model)")
    args = parser.parse_args(argv)
    install_uvloop()
    asyncio.run(serve(args.port, args.answer_bytes, args.chunks, args.chunk_delay_ms, args.host, args.delay_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
