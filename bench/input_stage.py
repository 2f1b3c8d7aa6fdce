"""Input-stage CPU per chat request: JSON parse (duplicate-key check included), the input item and the built-in
policy's rules over every message, for conversations of growing length.

    python -m bench.input_stage [--repeat 5]

One process, no sockets: what the proxy spends judging a prompt, which grows with the conversation's text now
that every message is judged (docs/reliability.md, "Side doors closed").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from proxy.config import load_settings
from proxy.handlers import _unique_keys
from proxy.routes import CHAT
from proxy.state import ProxyState

SENTENCE = "Please summarise the quarterly report for the board and list the three main risks. "


def body(user_turns: int) -> bytes:
    """A conversation: a system prompt when there is more than one turn, user and assistant turns alternating."""
    messages = [{"role": "system", "content": "You are a helpful assistant. " * 4}] if user_turns > 1 else []
    for i in range(user_turns):
        messages.append({"role": "user", "content": SENTENCE * 3})
        if i < user_turns - 1:
            messages.append({"role": "assistant", "content": SENTENCE * 4})
    return json.dumps({"model": "m", "messages": messages}).encode()


async def measure(repeat: int) -> list[tuple[int, int, float]]:
    """(messages, bytes, best CPU µs per request) per conversation shape."""
    state = ProxyState.build(load_settings(None))
    policy = state.guard.policy("default")
    out = []
    for turns in (1, 3, 10, 40):
        raw = body(turns)
        n = max(200, 6000 // turns)
        best = float("inf")
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(n):
                parsed = json.loads(raw, object_pairs_hook=_unique_keys)
                for item, _ in CHAT.inputs(parsed):
                    await state.guard.check(policy, item)
            best = min(best, (time.process_time() - started) / n)
        out.append((len(json.loads(raw)["messages"]), len(raw), best * 1e6))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.input_stage", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'messages':>9}{'bytes':>9}{'CPU us/request':>16}")
    for messages, size, micros in asyncio.run(measure(args.repeat)):
        print(f"{messages:>9}{size:>9}{micros:>16.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
