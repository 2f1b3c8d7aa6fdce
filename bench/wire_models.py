"""What validating answers and stream chunks with the wire models (proxy/protocol.py) would cost per request.

    python -m bench.wire_models [--repeat 5]

One process, no sockets: CPU µs to parse a one-choice answer and a streamed answer's 20 chunks as the proxy
does (orjson), and the same with each validated by its wire model on top. The request path reads parsed dicts
(protocol.py says why); this measures the cost it avoids, against `python -m bench.hotpath`'s per-request
proxy cost.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from proxy.jsonio import dumps, loads
from proxy.protocol import ChatCompletionResponse, ChatCompletionStreamResponse

CHUNKS = 20  # as bench.hotpath --stream

ANSWER = dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A short answer of a few words. " * 4},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 32, "total_tokens": 44}})

CHUNK = dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "m",
               "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None, "logprobs": None}]})


def best_us(step: Callable[[], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(n):
            step()
        best = min(best, (time.process_time() - started) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = 20000
    rows = [
        ("answer: parse", lambda: loads(ANSWER)),
        ("answer: parse + validate", lambda: ChatCompletionResponse.model_validate(loads(ANSWER))),
        (f"stream, {CHUNKS} chunks: parse", lambda: [loads(CHUNK) for _ in range(CHUNKS)]),
        (f"stream, {CHUNKS} chunks: parse + validate",
         lambda: [ChatCompletionStreamResponse.model_validate(loads(CHUNK)) for _ in range(CHUNKS)]),
    ]
    print(f"{'per request':40} {'CPU us':>8}")
    for name, step in rows:
        print(f"{name:40} {best_us(step, n if 'answer' in name else n // CHUNKS, args.repeat):8.1f}")


if __name__ == "__main__":
    main()
