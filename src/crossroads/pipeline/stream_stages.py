"""Response stages on a stream: each choice's text through every check, in order, as it comes.

A relay hands every upstream chunk to `StreamStages.chunk` and sends what comes back. Only
the `content` of each choice's delta is looked at — tool calls, reasoning and roles pass
untouched. Each check cuts the text it receives by its policy (`pass`: not at all, `hold`:
the whole choice, `sentence`: sentence by sentence) and what it lets through goes on to the
next check, then to the caller. So a per-sentence check delays the text by at most one
sentence, and a `hold` check delays the choice to its end — the policies the stages
declared, nothing buffered beyond them.

A check that refuses a piece (`StreamRefusal`) ends its choice: the refusal's words are
sent as the choice's last content with finish reason `content_filter`, and later upstream
text for that choice is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crossroads.pipeline.segments import Sentences, Whole
from crossroads.pipeline.stages import Segmenter, StreamCheck, StreamRefusal

if TYPE_CHECKING:
    from crossroads.pipeline.context import PreparedChat

__all__ = ["StreamStages"]


class _Choice:
    __slots__ = ("finished", "refused", "segmenters", "sent")

    def __init__(self, segmenters: list[Segmenter | None]) -> None:
        self.segmenters = segmenters
        self.finished = False
        self.refused: str | None = None
        self.sent: list[str] = []  # the text the caller was sent, for the record


class StreamStages:
    """The response stages' checks over one stream; one per streamed request."""

    def __init__(self, chat: PreparedChat, checks: list[StreamCheck]) -> None:
        self.chat = chat
        self.checks = checks
        self._choices: dict[int, _Choice] = {}

    def _choice(self, index: int) -> _Choice:
        state = self._choices.get(index)
        if state is None:
            state = _Choice([_segmenter(check) for check in self.checks])
            self._choices[index] = state
        return state

    async def _through(self, index: int, state: _Choice, text: str, *, final: bool) -> str:
        """`text` of choice `index` through every check; at `final`, each check's rest too."""
        pieces = [text] if text else []
        for check, segmenter in zip(self.checks, state.segmenters, strict=True):
            if segmenter is None:
                continue  # policy "pass": seen whole at the end, by `finish`
            ready = [piece for p in pieces for piece in segmenter.push(p)]
            if final:
                ready += segmenter.flush()
            pieces = [await check.check(index, piece) for piece in ready]
        return "".join(pieces)

    async def chunk(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """The chunk to send in place of `chunk` (None: nothing to send now)."""
        choices = chunk.get("choices")
        if not choices:
            return chunk
        out: list[dict[str, Any]] = []
        for choice in choices:
            index = int(choice.get("index") or 0)
            state = self._choice(index)
            if state.refused is not None or state.finished:
                continue
            delta = dict(choice.get("delta") or {})
            content = delta.get("content")
            finish = choice.get("finish_reason")
            try:
                if isinstance(content, str) and content:
                    delta["content"] = await self._through(index, state, content, final=False)
                if finish is not None:
                    tail = await self._through(index, state, "", final=True)
                    if tail:
                        delta["content"] = (delta.get("content") or "") + tail
            except StreamRefusal as refusal:
                out.append(self._refuse(index, state, refusal))
                continue
            if finish is not None:
                state.finished = True
            if delta.get("content") == "" and content:
                del delta["content"]  # held back: nothing of this piece to say yet
            if not delta and finish is None and not _other_fields(choice):
                continue
            shown = {**choice, "delta": delta}
            if finish is not None:
                shown.update(self._choice_fields(index))
            out.append(shown)
        if not out:
            return None
        self._note_sent(out)
        return {**chunk, "choices": out}

    def _note_sent(self, choices: list[dict[str, Any]]) -> None:
        for choice in choices:
            text = (choice.get("delta") or {}).get("content")
            if isinstance(text, str) and text:
                self._choice(int(choice.get("index") or 0)).sent.append(text)

    async def end(self, template: dict[str, Any]) -> dict[str, Any] | None:
        """The upstream ended: what choices that never finished still hold, as one chunk
        shaped like `template` (a chunk of this stream), or None."""
        out: list[dict[str, Any]] = []
        for index, state in sorted(self._choices.items()):
            if state.finished or state.refused is not None:
                continue
            try:
                tail = await self._through(index, state, "", final=True)
            except StreamRefusal as refusal:
                out.append(self._refuse(index, state, refusal))
                continue
            state.finished = True
            if tail:
                choice = {"index": index, "delta": {"content": tail}, "finish_reason": None}
                out.append({**choice, **self._choice_fields(index)})
        if not out:
            return None
        self._note_sent(out)
        return {**_identity(template), "choices": out}

    @property
    def all_refused(self) -> bool:
        """Every choice seen so far was ended by a check: the upstream need not go on."""
        states = self._choices.values()
        done = all(s.refused is not None or s.finished for s in states)
        return done and any(s.refused is not None for s in states)

    def finish(self, completion: dict[str, Any]) -> None:
        """The stream is over; every check reports on what the caller received.

        `completion` was assembled from the upstream's chunks: its texts become what the
        checks let through, so the record holds what the caller saw."""
        for choice in completion.get("choices") or ():
            state = self._choices.get(int(choice.get("index") or 0))
            if state is None or not (state.sent or state.refused is not None):
                continue
            message = choice.setdefault("message", {"role": "assistant"})
            message["content"] = "".join(state.sent)
            if state.refused is not None:
                choice["finish_reason"] = "content_filter"
        for check in self.checks:
            check.finish(self.chat, completion)

    def _refuse(self, index: int, state: _Choice, refusal: StreamRefusal) -> dict[str, Any]:
        state.refused = refusal.message
        choice = {
            "index": index,
            "delta": {"content": refusal.message},
            "finish_reason": "content_filter",
        }
        return {**choice, **self._choice_fields(index)}

    def _choice_fields(self, index: int) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for check in self.checks:
            fields.update(check.choice_fields(index))
        return fields


def _segmenter(check: StreamCheck) -> Segmenter | None:
    if check.policy == "pass":
        return None
    if check.policy == "hold":
        return Whole()
    return check.segmenter() or Sentences()


def _other_fields(choice: dict[str, Any]) -> bool:
    """Whether a choice carries something besides its delta (logprobs, …) worth sending."""
    return any(
        value is not None
        for key, value in choice.items()
        if key not in ("index", "delta", "finish_reason")
    )


def _identity(chunk: dict[str, Any]) -> dict[str, Any]:
    return {k: chunk[k] for k in ("id", "object", "created", "model") if k in chunk}
