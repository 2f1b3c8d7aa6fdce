"""Streaming output moderation (see ARCHITECTURE.md, "Streaming output moderation").

Modes, per policy (`policies.X.output.streaming`):
- `buffered`: text is held back and judged in windows of `chunk_size` tokens (each with
  `context_size` tokens of earlier, approved text); a window reaches the client only once it passes,
  less its last `context_size` tokens, which wait for the next window's verdict.
- `optimistic`: text is forwarded at once and judged in the same windows concurrently; the client
  may run at most one window ahead of the judged text, so a cut leaks at most one window.
- `final`: text is forwarded at once; the whole answer is judged at the end (only the finishing
  chunk waits for the verdict).
- `off`: a plain relay.
A cut choice ends with a `finish_reason: "content_filter"` chunk (with the policy's refusal text when
`streaming.refusal` is set); once every choice is over the upstream connection is closed.
`flag` outcomes let a window through and are audited; `redact` masks the findings in the events still
held (all of a window in buffered mode) as they are released.
Tool-call deltas, role chunks, usage chunks and keep-alive comments pass through unjudged, in order.
"""

from proxy.streaming.modes import ModePlan, effective_mode
from proxy.streaming.relay import StreamRelay, StreamRequest, expected_choices
from proxy.streaming.windows import count_tokens

__all__ = ["StreamRelay", "StreamRequest", "ModePlan", "effective_mode", "expected_choices", "count_tokens"]
