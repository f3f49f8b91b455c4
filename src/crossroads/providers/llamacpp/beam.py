"""Beam search (vLLM's `use_beam_search`) for the in-process llama.cpp engine.

llama.cpp's server has no beam search, but for any prompt given as token ids it returns the
next token's top-k log-probabilities (full softmax, before sampling) and reuses the KV cache
of the longest cached prefix. So the search runs here: every step asks the engine, for all
live beams at once, for one token each, and the slots' prompt caches make a step cost about
one token of evaluation per beam.

The design decision to know: `beam_search` never sees the engine. It drives a `StepFn`
(generated ids → top-k next tokens) and owns all the semantics, scored as vLLM scores:
`cum_logprob / length ** length_penalty`, where `length` is the prompt tokens plus the
generated tokens, a final EOS not counted (vLLM's `get_beam_search_score`). Stopping
follows `early_stopping` exactly as Hugging Face's `BeamHypotheses.is_done`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from crossroads.providers.llamacpp.engine import EngineError, LlamaEngine

__all__ = [
    "Beam", "BeamRequest", "EarlyStopping", "StepFn", "TokenChoice", "beam_choices",
    "beam_request", "beam_score", "beam_search", "beam_usage", "engine_beam_search",
    "engine_eos_ids", "engine_prompt", "engine_step",
]  # fmt: skip

EarlyStopping: TypeAlias = bool | Literal["never"]

# End-of-turn markers of common chat formats. A marker counts only if the model's vocabulary
# has it as one token that llama.cpp itself treats as end-of-generation (see `engine_eos_ids`).
_EOS_MARKERS = (
    "<end_of_turn>", "<eos>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>",
    "<|endoftext|>", "<|end|>", "<|return|>", "</s>",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TokenChoice:
    id: int
    logprob: float
    piece: bytes


StepFn: TypeAlias = Callable[[Sequence[int]], Awaitable[list[TokenChoice]]]


@dataclass(slots=True)
class Beam:
    """One hypothesis. `tokens` keeps a final EOS id; its piece is b"" so `text` omits it."""

    tokens: list[int]
    pieces: list[bytes]
    cum_logprob: float
    finish_reason: str | None = None
    score: float = float("-inf")  # set when the beam finishes
    prompt_len: int = field(default=0, repr=False)  # counted in the score's length

    @property
    def text(self) -> str:
        return b"".join(self.pieces).decode("utf-8", errors="replace")


def beam_score(cum_logprob: float, length: int, length_penalty: float) -> float:
    """vLLM's score; `length` = prompt + generated tokens, without a final EOS."""
    return cum_logprob / math.pow(max(length, 1), length_penalty)


def _trim_at_stop(beam: Beam, stops: Sequence[bytes], new: int) -> bool:
    """Cut `beam.pieces` at the first stop string touching its last `new` bytes."""
    joined = b"".join(beam.pieces)
    cuts = [
        at
        for stop in stops
        if (at := joined.find(stop, max(0, len(joined) - new - len(stop) + 1))) >= 0
    ]
    if not cuts:
        return False
    room = min(cuts)
    for i, piece in enumerate(beam.pieces):
        beam.pieces[i] = piece[:room]
        room = max(0, room - len(piece))
    return True


async def beam_search(
    step: StepFn,
    *,
    width: int,
    n: int,
    max_tokens: int,
    length_penalty: float = 1.0,
    early_stopping: EarlyStopping = False,
    eos_ids: frozenset[int],
    stop: Sequence[str] = (),
    prompt_len: int = 0,
) -> list[Beam]:
    """Up to `n` finished beams, best first. `prompt_len` only enters the scores.

    As in HF, each step keeps the `width` best unfinished candidates by cumulative logprob,
    and a candidate that ends (EOS id or stop string) is kept only if it ranks within the
    step's top `width`, which makes width 1 exactly greedy decoding.
    """
    if not 1 <= n <= width:
        raise ValueError(f"need 1 <= n <= width, got n={n}, width={width}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    stops = [s.encode() for s in stop if s]
    finished: list[Beam] = []  # the `width` best by score, best first

    def finish(beam: Beam, reason: str, length: int) -> None:
        beam.finish_reason = reason
        beam.score = beam_score(beam.cum_logprob, prompt_len + length, length_penalty)
        finished.append(beam)
        finished.sort(key=lambda b: b.score, reverse=True)
        del finished[width:]

    def done(best: float, length: int) -> bool:  # HF BeamHypotheses.is_done
        if len(finished) < width:
            return False
        if early_stopping is True:
            return True
        if early_stopping == "never" and length_penalty > 0:
            length = max_tokens  # a longer beam can only score higher then
        return finished[-1].score >= beam_score(best, prompt_len + length, length_penalty)

    live = [Beam([], [], 0.0, prompt_len=prompt_len)]
    for length in range(1, max_tokens + 1):
        tops = await asyncio.gather(*(step(beam.tokens) for beam in live))
        candidates = [
            (parent, choice)
            for parent, top in zip(live, tops, strict=True)
            for choice in top[: 2 * width]
        ]
        candidates.sort(key=lambda c: c[0].cum_logprob + c[1].logprob, reverse=True)
        live = []
        for rank, (parent, choice) in enumerate(candidates):
            eos = choice.id in eos_ids
            child = Beam(
                [*parent.tokens, choice.id],
                [*parent.pieces, b"" if eos else choice.piece],
                parent.cum_logprob + choice.logprob,
                prompt_len=prompt_len,
            )
            if eos or (stops and _trim_at_stop(child, stops, len(choice.piece))):
                if rank < width:  # as HF: lower-ranked endings are dropped (width 1 = greedy)
                    finish(child, "stop", length - 1 if eos else length)
            else:
                live.append(child)
                if len(live) == width:
                    break
        if not live or done(live[0].cum_logprob, length):
            break
    else:
        for beam in live:
            finish(beam, "length", max_tokens)
    return finished[:n]


# --- the embedded engine --------------------------------------------------------------------


async def engine_prompt(engine: LlamaEngine, messages: list[dict[str, Any]]) -> list[int]:
    """The chat prompt's token ids, BOS included: what a chat completion would evaluate."""
    rendered = await engine.http("/apply-template", {"messages": messages})
    tokenized = await engine.http(
        "/tokenize", {"content": rendered["prompt"], "add_special": True, "parse_special": True}
    )
    return [int(token) for token in tokenized["tokens"]]


def engine_step(engine: LlamaEngine, prompt_ids: Sequence[int], k: int) -> StepFn:
    """A step that evaluates `prompt_ids + generated` and returns the next token's top `k`."""
    prompt = list(prompt_ids)

    async def step(generated: Sequence[int]) -> list[TokenChoice]:
        body = {"prompt": [*prompt, *generated], "max_tokens": 1, "n_probs": k, "temperature": 0}
        result = await engine.call("handle_completions", {**body, "cache_prompt": True})
        top = result["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        return [TokenChoice(int(t["id"]), float(t["logprob"]), bytes(t["bytes"])) for t in top]

    return step


async def _end_of_generation(engine: LlamaEngine, marker: str) -> int | None:
    body = {"content": marker, "add_special": False, "parse_special": True}
    tokens = (await engine.http("/tokenize", body))["tokens"]
    if len(tokens) != 1:
        return None
    token = int(tokens[0])
    # Force the token: llama.cpp ends with "stop" on an end-of-generation token, else "length".
    probe = await engine.call(
        "handle_completions",
        {"prompt": [token], "max_tokens": 1, "temperature": 0, "logit_bias": [[token, 100]]},
    )
    return token if probe["choices"][0]["finish_reason"] == "stop" else None


async def engine_eos_ids(engine: LlamaEngine) -> frozenset[int]:
    """The model's end-of-generation ids among well-known end-of-turn markers (cache it)."""
    found = await asyncio.gather(*(_end_of_generation(engine, m) for m in _EOS_MARKERS))
    ids = frozenset(token for token in found if token is not None)
    if not ids:
        raise EngineError("beam search: found no end-of-generation token for this model", 500)
    return ids


async def engine_beam_search(
    engine: LlamaEngine,
    messages: list[dict[str, Any]],
    *,
    width: int,
    n: int,
    max_tokens: int,
    length_penalty: float,
    early_stopping: EarlyStopping,
    stop: Sequence[str],
    eos_ids: frozenset[int] | None = None,
) -> list[Beam]:
    """Beam search over a chat prompt on the engine; see `beam_search`."""
    prompt_ids = await engine_prompt(engine, messages)
    if eos_ids is None:
        eos_ids = await engine_eos_ids(engine)
    return await beam_search(
        engine_step(engine, prompt_ids, 2 * width),
        width=width,
        n=n,
        max_tokens=max_tokens,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        eos_ids=eos_ids,
        stop=stop,
        prompt_len=len(prompt_ids),
    )


# --- the OpenAI side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BeamRequest:
    width: int
    n: int
    max_tokens: int
    length_penalty: float
    early_stopping: EarlyStopping
    stop: tuple[str, ...]


def _invalid(message: str) -> EngineError:
    return EngineError(message, 400, "invalid_request_error")


def _count(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise _invalid(f"'{name}' must be a positive integer")
    return None if value is None else int(value)


def beam_request(body: Mapping[str, Any], *, default_max_tokens: int = 16) -> BeamRequest | None:
    """The beam-search settings of a request (None without `use_beam_search`).

    Width is `beam_size`, else `best_of`, else `n`; sampling parameters are ignored.
    """
    if not body.get("use_beam_search"):
        return None
    n = _count(body, "n") or 1
    width = _count(body, "beam_size") or _count(body, "best_of") or n
    if n > width:
        raise _invalid(f"'n' ({n}) must not exceed the beam width ({width})")
    early = body.get("early_stopping", False)
    if not (isinstance(early, bool) or early == "never"):
        raise _invalid("'early_stopping' must be true, false or \"never\"")
    penalty = body.get("length_penalty", 1.0)
    if isinstance(penalty, bool) or not isinstance(penalty, int | float):
        raise _invalid("'length_penalty' must be a number")
    stop = body.get("stop") or ()
    stops = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stops, list | tuple) or not all(isinstance(s, str) for s in stops):
        raise _invalid("'stop' must be a string or a list of strings")
    limit = _count(body, "max_completion_tokens") or _count(body, "max_tokens")
    return BeamRequest(width, n, limit or default_max_tokens, float(penalty), early, tuple(stops))


def beam_choices(beams: Sequence[Beam]) -> list[dict[str, Any]]:
    """OpenAI chat `choices`, best beam first."""
    return [
        {"index": index, "message": {"role": "assistant", "content": beam.text},
         "logprobs": None, "finish_reason": beam.finish_reason}
        for index, beam in enumerate(beams)
    ]  # fmt: skip


def beam_usage(beams: Sequence[Beam]) -> dict[str, int]:
    """vLLM's accounting: completion tokens summed over the returned beams (a final EOS
    included); the pruned candidates' tokens are not counted."""
    prompt = beams[0].prompt_len if beams else 0
    completion = sum(len(beam.tokens) for beam in beams)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
