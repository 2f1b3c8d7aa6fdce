"""What the upstream will read in a request, located: the input stage judges all of it, `redact` rewrites it.

A request's text lives in many places: each chat message's `content` (a string, or a list of parts whose `text`
fields count), tool results, the arguments of earlier tool calls, every legacy prompt and the legacy `suffix`.
`RequestText` joins those pieces with newlines into the one text rule engines scan (so a finding never spans two
pieces unless a rule matches across a line break, as a PEM block does) and keeps where each piece came from, so
a finding's span can be masked in place: strings stay strings, part lists stay lists.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from evaluators.base import EvalItem, Finding, Turn, content_text
from evaluators.spans import mask, merge_sorted, placeholder_spans
from proxy.protocol import completion_prompts

#: between two pieces of the scanned text
SEPARATOR = "\n"


@dataclass(frozen=True, slots=True)
class Piece:
    """One string of the request body: `holder[key]`, starting at `start` in the joined text."""

    holder: MutableMapping[str, Any]
    key: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RequestText:
    """The joined text of some pieces of a request body, and where each piece sits in it."""

    text: str
    pieces: tuple[Piece, ...]

    @classmethod
    def of(cls, places: Sequence[tuple[MutableMapping[str, Any], str]]) -> RequestText:
        pieces: list[Piece] = []
        texts: list[str] = []
        pos = 0
        for holder, key in places:
            value = holder[key]
            pieces.append(Piece(holder, key, pos, pos + len(value)))
            texts.append(value)
            pos += len(value) + len(SEPARATOR)
        return cls(SEPARATOR.join(texts), tuple(pieces))

    def offset_of(self, index: int) -> int:
        """Where piece `index` starts (the end of the text when there is no such piece)."""
        return self.pieces[index].start if index < len(self.pieces) else len(self.text)


def redact_in_place(located: Sequence[tuple[RequestText, Sequence[Finding]]]) -> None:
    """Mask every finding in the request body it was found in; a span over several pieces masks its part of
    each (the placeholder goes in the first). A piece shared by several texts (the legacy suffix is
    judged with each prompt) is masked once, with the findings of all of them."""
    spans: dict[tuple[int, str], tuple[Piece, list[tuple[int, int, str]]]] = {}
    for text, findings in located:
        if not findings:
            continue
        for start, end, label in placeholder_spans(findings, len(text.text)):
            for piece in text.pieces:
                if end <= piece.start or start >= piece.end:
                    continue
                entry = spans.setdefault((id(piece.holder), piece.key), (piece, []))
                entry[1].append((start - piece.start, end - piece.start, label))
                label = ""  # the rest of a span over several pieces is masked with nothing
    for piece, piece_spans in spans.values():
        ordered = sorted(piece_spans, key=lambda span: (span[0], -span[1], not span[2]))  # labelled first
        piece.holder[piece.key] = mask(piece.holder[piece.key], merge_sorted(ordered))


# -- chat ------------------------------------------------------------------------------------------

def chat_places(message: MutableMapping[str, Any]) -> Iterator[tuple[MutableMapping[str, Any], str]]:
    """The strings of one chat message the upstream reads: its content (or each text part), then the
    arguments of its tool calls."""
    content = message.get("content")
    if isinstance(content, str):
        yield message, "content"
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part, "text"
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield function, "arguments"
    function_call = message.get("function_call")
    if isinstance(function_call, dict) and isinstance(function_call.get("arguments"), str):
        yield function_call, "arguments"


def chat_input(body: dict[str, Any]) -> tuple[EvalItem, RequestText]:
    """The input item of a chat request: the last user turn judged in the context of the turns before it, and
    the whole request's text for the rules."""
    messages = [m for m in body.get("messages", ()) if isinstance(m, dict)]
    if len(messages) == 1 and len(only := messages[0]) == 2 and isinstance(only.get("content"), str):
        content = only["content"]  # the usual request, {role, content}: the judged turn is all there is to scan
        turn = Turn(str(only.get("role", "user")), content)
        return EvalItem(turns=(turn,), stage="input"), RequestText(content, (Piece(only, "content", 0, len(content)),))
    places: list[tuple[MutableMapping[str, Any], str]] = []
    firsts: list[int] = []  # index of each message's first piece
    for message in messages:
        firsts.append(len(places))
        places.extend(chat_places(message))
    text = RequestText.of(places)
    turns = tuple(Turn(str(m.get("role", "user")), content_text(m.get("content"))) for m in messages)
    judged = next((i for i in range(len(turns) - 1, -1, -1) if turns[i].role == "user"), len(turns) - 1)
    single = len(text.pieces) == 1 and turns[judged].content == text.text
    item = EvalItem(turns=turns, stage="input", judged=judged, request_text=None if single else text.text,
                    judged_at=0 if single else text.offset_of(firsts[judged]))
    return item, text


# -- legacy completions ----------------------------------------------------------------------------

def completion_inputs(body: dict[str, Any]) -> list[tuple[EvalItem, RequestText]]:
    """One input item per text prompt (token-id prompts cannot be read as text), each scanned with the
    `suffix` the upstream reads after it."""
    prompt = body.get("prompt")
    holders: list[tuple[MutableMapping[str, Any], str]]
    if isinstance(prompt, str):
        holders = [(body, "prompt")]
    else:
        indexed = _IndexView(prompt) if isinstance(prompt, list) and completion_prompts(prompt) else None
        holders = [(indexed, str(i)) for i in range(len(indexed))] if indexed is not None else []
    suffix = [(body, "suffix")] if isinstance(body.get("suffix"), str) and body["suffix"] else []
    if not holders and suffix:  # token-id prompts with a text suffix: the suffix is still read
        text = RequestText.of(suffix)
        return [(EvalItem(turns=(Turn("user", ""),), stage="input", request_text=text.text), text)]
    out = []
    for holder, key in holders:
        text = RequestText.of([(holder, key), *suffix])
        item = EvalItem(turns=(Turn("user", holder[key]),), stage="input",
                        request_text=text.text if suffix else None)
        out.append((item, text))
    return out


class _IndexView(MutableMapping[str, Any]):
    """A list seen as a mapping from str(index): lets a list of prompts be a piece holder like a dict."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[int(key)]

    def __setitem__(self, key: str, value: Any) -> None:
        self._items[int(key)] = value

    def __delitem__(self, key: str) -> None:  # pragma: no cover - pieces are never deleted
        raise TypeError("pieces are never deleted")

    def __iter__(self) -> Iterator[str]:
        return (str(i) for i in range(len(self._items)))

    def __len__(self) -> int:
        return len(self._items)
