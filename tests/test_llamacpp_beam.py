"""Beam search: the algorithm on toy language models, then on the real Gemma 3 270M engine."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest
import pytest_asyncio

from crossroads.providers.llamacpp.beam import (
    Beam,
    BeamRequest,
    EarlyStopping,
    StepFn,
    TokenChoice,
    beam_choices,
    beam_request,
    beam_score,
    beam_search,
    beam_usage,
    engine_beam_search,
    engine_eos_ids,
    engine_prompt,
    engine_step,
)
from crossroads.providers.llamacpp.engine import EngineError, LlamaEngine

EOS = 0
PIECES = {EOS: b"<eos>", 1: b"a", 2: b"b", 3: b"c", 4: b"d", 5: b"e"}
Table = dict[tuple[int, ...], dict[int, float]]


def table_lm(table: Table, default: dict[int, float] | None = None) -> StepFn:
    """A language model given as prefix → {token: logprob}; unknown prefixes use `default`."""
    fallback = default or {4: -8.0, EOS: -9.0}

    async def step(generated: Sequence[int]) -> list[TokenChoice]:
        dist = table.get(tuple(generated), fallback)
        ranked = sorted(dist.items(), key=lambda item: item[1], reverse=True)
        return [TokenChoice(token, logprob, PIECES[token]) for token, logprob in ranked]

    return step


def random_lm(seed: int, vocab: int = 6) -> StepFn:
    """A seeded random softmax per prefix (id 0 is EOS, a little less likely than the rest)."""

    async def step(generated: Sequence[int]) -> list[TokenChoice]:
        rng = random.Random(f"{seed}:{list(generated)}")
        logits = [rng.gauss(0.0, 2.0) - (1.5 if token == EOS else 0.0) for token in range(vocab)]
        norm = math.log(sum(math.exp(x) for x in logits))
        ranked = sorted(range(vocab), key=lambda token: logits[token], reverse=True)
        return [TokenChoice(t, logits[t] - norm, PIECES.get(t, b"z")) for t in ranked]

    return step


async def greedy(step: StepFn, max_tokens: int) -> tuple[list[int], float, int]:
    """Greedy decoding: (tokens, cumulative logprob, scoring length without EOS)."""
    tokens: list[int] = []
    cum = 0.0
    for _ in range(max_tokens):
        best = (await step(tokens))[0]
        tokens.append(best.id)
        cum += best.logprob
        if best.id == EOS:
            return tokens, cum, len(tokens) - 1
    return tokens, cum, len(tokens)


async def search(step: StepFn, **options: Any) -> list[Beam]:
    settings: dict[str, Any] = {"width": 1, "n": 1, "max_tokens": 6, "eos_ids": frozenset({EOS})}
    return await beam_search(step, **{**settings, **options})


# --- the algorithm ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
async def test_width_one_is_greedy(seed: int) -> None:
    step = random_lm(seed)
    tokens, cum, _ = await greedy(step, 8)
    for early, penalty in ((True, 1.0), (False, 0.0), ("never", 0.0)):
        (beam,) = await search(step, max_tokens=8, early_stopping=early, length_penalty=penalty)
        assert beam.tokens == tokens
        assert beam.cum_logprob == pytest.approx(cum)


async def test_best_beam_scores_at_least_greedy() -> None:
    wins = 0
    for seed in range(40):
        step = random_lm(seed)
        _, cum, length = await greedy(step, 8)
        best = (await search(step, width=4, max_tokens=8, prompt_len=5))[0]
        greedy_score = beam_score(cum, 5 + length, 1.0)
        assert best.score >= greedy_score - 1e-12, seed
        wins += best.score > greedy_score + 1e-9
    assert wins >= 10  # the search does find better sequences than greedy


async def sequence_logprob(step: StepFn, tokens: Sequence[int]) -> float:
    total = 0.0
    for i, token in enumerate(tokens):
        total += next(c.logprob for c in await step(tokens[:i]) if c.id == token)
    return total


@pytest.mark.parametrize("penalty", [-0.5, 0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(4))
async def test_wide_beam_with_early_stopping_never_is_exhaustive(seed: int, penalty: float) -> None:
    # Wide enough to keep every sequence, the search must return the true top 5.
    step = random_lm(seed, vocab=4)
    scored: list[tuple[float, list[int]]] = []
    for length in range(5):
        for prefix in itertools.product((1, 2, 3), repeat=length):
            tokens = [*prefix, EOS] if length < 4 else list(prefix)  # 4 = max_tokens
            cum = await sequence_logprob(step, tokens)
            scored.append((beam_score(cum, 3 + length, penalty), tokens))
    scored.sort(reverse=True)
    beams = await search(
        step,
        width=128,
        n=5,
        max_tokens=4,
        length_penalty=penalty,
        early_stopping="never",
        prompt_len=3,
    )
    assert [beam.tokens for beam in beams] == [tokens for _, tokens in scored[:5]]
    assert [beam.score for beam in beams] == pytest.approx([score for score, _ in scored[:5]])


async def test_length_penalty_flips_the_winner() -> None:
    step = table_lm(
        {
            (): {1: -0.5, 2: -0.7, EOS: -6.0},
            (1,): {EOS: -0.1, 3: -3.0},
            (2,): {3: -0.1, EOS: -4.0},
            (2, 3): {4: -0.1, EOS: -4.0},
            (2, 3, 4): {EOS: -0.1},
        }
    )
    winners = {}
    for penalty in (0.0, 1.0, 2.0):
        beams = await search(step, width=2, n=2, length_penalty=penalty, early_stopping="never")
        winners[penalty] = beams[0]
    assert winners[0.0].text == "a" and winners[0.0].score == pytest.approx(-0.6)
    assert winners[1.0].text == "bcd" and winners[1.0].score == pytest.approx(-1.0 / 3)
    assert winners[2.0].text == "bcd"
    assert winners[1.0].tokens == [2, 3, 4, EOS] and winners[1.0].finish_reason == "stop"


@pytest.mark.parametrize("seed", range(20))
async def test_winner_length_grows_with_length_penalty(seed: int) -> None:
    # With early_stopping="never" the result is the best of one fixed set of hypotheses, so
    # the winner's length cannot shrink as length_penalty grows (all logprobs are negative).
    step = random_lm(seed)
    lengths = []
    for penalty in (0.0, 0.5, 1.0, 2.0, 4.0):
        best = (
            await search(
                step, width=3, max_tokens=8, length_penalty=penalty, early_stopping="never"
            )
        )[0]
        lengths.append(len(best.tokens) - (best.tokens[-1] == EOS))
    assert lengths == sorted(lengths)


async def test_early_stopping_true_stops_at_the_first_full_set() -> None:
    step = table_lm(
        {
            (): {1: -0.1, 2: -2.0, EOS: -3.0},
            (1,): {EOS: -0.2, 3: -0.3, 4: -4.0},
            (1, 3): {5: -0.01, EOS: -5.0},
            (1, 3, 5): {EOS: -0.01, 4: -6.0},
        }
    )
    results = {
        early: (await search(step, early_stopping=early))[0] for early in (True, False, "never")
    }
    assert results[True].text == "a" and results[True].score == pytest.approx(-0.3)
    assert results[False].text == results["never"].text == "ace"
    assert results[False].score == pytest.approx(-0.42 / 3)


async def test_early_stopping_never_looks_past_the_current_length() -> None:
    step = table_lm(
        {
            (): {1: -0.1, 2: -2.0},
            (1,): {EOS: -0.2, 3: -0.6},
            (1, 3): {5: -0.01},
            (1, 3, 5): {EOS: -0.01},
        }
    )
    results: dict[EarlyStopping, Beam] = {}
    for early in (True, False, "never"):
        results[early] = (await search(step, early_stopping=early))[0]
    assert results[True].text == results[False].text == "a"
    assert results["never"].text == "ace" and results["never"].score == pytest.approx(-0.24)


async def test_stop_strings_trim_and_finish() -> None:
    pieces = {(): {1: -0.1}, (1,): {2: -0.1}, (1, 2): {3: -0.1}, (1, 2, 3): {4: -0.1}}
    step = table_lm(pieces)  # "a" "b" "c" "d" … then "d"s
    cases = {("bc",): "a", ("cd", "b"): "a", ("dd",): "abc", ("c", "abc"): "", ("zz",): None}
    for stop, text in cases.items():
        (beam,) = await search(step, max_tokens=5, stop=stop)
        if text is None:
            assert beam.finish_reason == "length" and beam.text == "abcdd"
        else:
            assert beam.finish_reason == "stop" and beam.text == text
            assert len(beam.pieces) == len(beam.tokens)


async def test_eos_stays_in_tokens_but_not_in_text() -> None:
    step = table_lm({(): {1: -0.1}, (1,): {EOS: -0.1}})
    (beam,) = await search(step, prompt_len=4)
    assert beam.tokens == [1, EOS] and beam.text == "a" and beam.finish_reason == "stop"
    assert beam.score == pytest.approx(-0.2 / 5)  # 4 prompt tokens + "a"; EOS not counted
    assert beam_usage([beam]) == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}


@pytest.mark.parametrize("seed", range(10))
async def test_n_beams_are_distinct_and_sorted(seed: int) -> None:
    beams = await search(random_lm(seed), width=5, n=4, max_tokens=7)
    assert len(beams) == 4
    assert len({tuple(beam.tokens) for beam in beams}) == 4
    assert [beam.score for beam in beams] == sorted((beam.score for beam in beams), reverse=True)
    for beam in beams:
        assert beam.finish_reason in ("stop", "length")
        assert beam.score == beam_score(
            beam.cum_logprob, len(beam.tokens) - (beam.tokens[-1] == EOS), 1.0
        )


async def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="n <= width"):
        await search(random_lm(0), width=2, n=3)
    with pytest.raises(ValueError, match="max_tokens"):
        await search(random_lm(0), max_tokens=0)


def test_beam_request_and_choices() -> None:
    assert beam_request({"n": 2}) is None
    assert beam_request(
        {
            "use_beam_search": True,
            "n": 2,
            "best_of": 4,
            "max_tokens": 9,
            "stop": "\n",
            "early_stopping": "never",
            "length_penalty": 0,
        }
    ) == BeamRequest(4, 2, 9, 0.0, "never", ("\n",))
    assert beam_request(
        {"use_beam_search": True, "n": 3, "beam_size": 5, "max_completion_tokens": 4}
    ) == BeamRequest(5, 3, 4, 1.0, False, ())
    assert beam_request({"use_beam_search": True}) == BeamRequest(1, 1, 16, 1.0, False, ())
    for bad in (
        {"n": 3, "best_of": 2},
        {"early_stopping": "sometimes"},
        {"early_stopping": 1},
        {"beam_size": 0},
        {"best_of": True},
        {"stop": [1]},
        {"length_penalty": "x"},
    ):
        with pytest.raises(EngineError) as caught:
            beam_request({"use_beam_search": True, **bad})
        assert caught.value.status == 400
    beams = [Beam([1, EOS], [b"h\xc3", b"\xa9", b""], -1.0, "stop", -0.5, 7)]
    assert beam_choices(beams) == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hé"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]


# --- the real engine --------------------------------------------------------------------------

SAY_HI = [{"role": "user", "content": "Say hi."}]
HELLO = [{"role": "user", "content": "Hello!"}]
SKY = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
NEWLINE = 107  # "\n": used as an extra end token, since this model rarely ends a turn early


def close_enough(a: float, b: float) -> bool:
    """`a >= b` up to the engine's numeric noise (logprobs move by ~0.01 per token between
    runs, as batch composition and cache reuse change the arithmetic)."""
    return a >= b - 0.05 * abs(b)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def eos_ids(engine: LlamaEngine) -> frozenset[int]:
    return await engine_eos_ids(engine)


async def chat_greedy(
    engine: LlamaEngine, messages: list[dict[str, Any]], k: int
) -> dict[str, Any]:
    body = {"messages": messages, "temperature": 0, "max_tokens": k, "logprobs": True}
    # top_logprobs=0 makes this build leave out `logprobs` entirely; 1 keeps them.
    return await engine.call("handle_chat_completions", {**body, "top_logprobs": 1})


@pytest.mark.engine
async def test_engine_eos_ids(eos_ids: frozenset[int]) -> None:
    # <eos>, <end_of_turn>, and "</s>" (id 212), which llama.cpp also treats as end-of-generation.
    assert eos_ids == {1, 106, 212}


@pytest.mark.engine
async def test_step_logprobs_are_full_softmax_and_prompt_matches_chat(engine: LlamaEngine) -> None:
    prompt_ids = await engine_prompt(engine, SAY_HI)
    assert prompt_ids[0] == 2  # BOS
    chat = await chat_greedy(engine, SAY_HI, 3)
    assert chat["usage"]["prompt_tokens"] == len(prompt_ids)
    chosen = chat["choices"][0]["logprobs"]["content"]
    text = (await engine.http("/apply-template", {"messages": SAY_HI}))["prompt"]
    generated = [entry["id"] for entry in chosen[:2]]
    base = {"max_tokens": 1, "temperature": 0, "n_probs": 8}
    as_ids = await engine.call("handle_completions", {**base, "prompt": [*prompt_ids, *generated]})
    as_text = await engine.call("handle_completions", {**base, "prompt": [text, *generated]})
    biased = await engine.call(
        "handle_completions",
        {**base, "prompt": [*prompt_ids, *generated], "logit_bias": [[9259, 100]]},
    )
    assert (
        as_ids["usage"]["prompt_tokens"] == as_text["usage"]["prompt_tokens"] == len(prompt_ids) + 2
    )
    tops = [r["choices"][0]["logprobs"]["content"][0] for r in (as_ids, as_text, biased)]
    assert tops[2]["id"] == 9259 != tops[0]["id"]  # the bias decided the sampled token …
    for top in tops[1:]:  # … but not the reported distribution, which is the raw softmax
        assert [t["id"] for t in top["top_logprobs"]] == [t["id"] for t in tops[0]["top_logprobs"]]
        for a, b in zip(top["top_logprobs"], tops[0]["top_logprobs"], strict=True):
            assert a["logprob"] == pytest.approx(b["logprob"], abs=0.02)
    assert 0.0 < sum(math.exp(t["logprob"]) for t in tops[0]["top_logprobs"]) <= 1.0 + 1e-6
    step = await engine_step(engine, prompt_ids, 4)(generated)
    assert [c.id for c in step] == [t["id"] for t in tops[0]["top_logprobs"][:4]]
    assert step[0].id == chosen[2]["id"]
    assert step[0].logprob == pytest.approx(chosen[2]["logprob"], abs=0.02)
    assert step[0].piece == bytes(chosen[2]["bytes"])


@pytest.mark.engine
@pytest.mark.parametrize("messages", [SAY_HI, SKY])
async def test_engine_width_one_is_greedy(
    engine: LlamaEngine, eos_ids: frozenset[int], messages: list[dict[str, Any]]
) -> None:
    chat = await chat_greedy(engine, messages, 10)
    (beam,) = await engine_beam_search(
        engine,
        messages,
        width=1,
        n=1,
        max_tokens=10,
        length_penalty=1.0,
        early_stopping=True,
        stop=(),
        eos_ids=eos_ids,
    )
    assert beam.text == chat["choices"][0]["message"]["content"]
    assert beam.tokens == [entry["id"] for entry in chat["choices"][0]["logprobs"]["content"]]
    assert beam.finish_reason == chat["choices"][0]["finish_reason"] == "length"


@pytest.mark.engine
@pytest.mark.parametrize("messages", [SAY_HI, SKY])
async def test_engine_best_beam_scores_at_least_greedy(
    engine: LlamaEngine, eos_ids: frozenset[int], messages: list[dict[str, Any]]
) -> None:
    chat = await chat_greedy(engine, messages, 8)
    assert chat["choices"][0]["finish_reason"] == "length"
    cum = sum(entry["logprob"] for entry in chat["choices"][0]["logprobs"]["content"])
    greedy_score = beam_score(cum, chat["usage"]["prompt_tokens"] + 8, 1.0)
    beams = await engine_beam_search(
        engine,
        messages,
        width=3,
        n=3,
        max_tokens=8,
        length_penalty=1.0,
        early_stopping=False,
        stop=(),
        eos_ids=eos_ids,
    )
    print(f"\ngreedy {greedy_score:.4f} vs beams {[round(b.score, 4) for b in beams]}")
    assert close_enough(beams[0].score, greedy_score)
    usage = beam_usage(beams)
    assert usage["prompt_tokens"] == chat["usage"]["prompt_tokens"]
    assert usage["completion_tokens"] == sum(len(b.tokens) for b in beams)


@pytest.mark.engine
async def test_engine_early_stopping(engine: LlamaEngine, eos_ids: frozenset[int]) -> None:
    # The newline ends hypotheses too (this model rarely ends a turn within 10 tokens), and a
    # strong length penalty makes the hypotheses found after the first three worth waiting for.
    results: dict[EarlyStopping, list[Beam]] = {}
    for early in (True, False, "never"):
        results[early] = await engine_beam_search(
            engine,
            SAY_HI,
            width=3,
            n=3,
            max_tokens=10,
            length_penalty=3.0,
            early_stopping=early,
            stop=(),
            eos_ids=eos_ids | {NEWLINE},
        )
        print(f"\nearly_stopping={early!r}: {[(b.text, b.score) for b in results[early]]}")
    # Each rule stops no earlier than the one before, and the kept set only improves.
    assert close_enough(results["never"][0].score, results[False][0].score)
    assert close_enough(results[False][0].score, results[True][0].score)
    assert len(results[True][0].tokens) < len(results["never"][0].tokens)


@pytest.mark.engine
@pytest.mark.parametrize("messages", [SAY_HI, HELLO])
async def test_engine_length_penalty(
    engine: LlamaEngine, eos_ids: frozenset[int], messages: list[dict[str, Any]]
) -> None:
    # With early_stopping="never" the winner's length cannot shrink as the penalty grows.
    lengths = []
    for penalty in (0.0, 1.0, 3.0):
        beams = await engine_beam_search(
            engine,
            messages,
            width=3,
            n=3,
            max_tokens=10,
            length_penalty=penalty,
            early_stopping="never",
            stop=(),
            eos_ids=eos_ids | {NEWLINE},
        )
        print(f"\nlength_penalty={penalty}: {[(b.text, b.finish_reason) for b in beams]}")
        lengths.append(len(beams[0].tokens))
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]


@pytest.mark.engine
async def test_engine_stop_string(engine: LlamaEngine, eos_ids: frozenset[int]) -> None:
    beams = await engine_beam_search(
        engine,
        SKY,
        width=2,
        n=2,
        max_tokens=8,
        length_penalty=1.0,
        early_stopping=False,
        stop=("?",),
        eos_ids=eos_ids,
    )
    assert all("?" not in b.text and b.finish_reason == "stop" for b in beams)
    assert beams[0].text == "Is the sky blue"


@pytest.mark.engine
@pytest.mark.parametrize("width", [1, 2, 4])
async def test_engine_step_latency(engine: LlamaEngine, width: int) -> None:
    prompt_ids = await engine_prompt(engine, SAY_HI)
    inner = engine_step(engine, prompt_ids, 2 * width)
    calls: list[float] = []

    async def timed(generated: Sequence[int]) -> list[TokenChoice]:
        started = time.perf_counter()
        try:
            return await inner(generated)
        finally:
            calls.append(time.perf_counter() - started)

    rounds: set[int] = set()

    async def counted(generated: Sequence[int]) -> list[TokenChoice]:
        rounds.add(len(generated))
        return await timed(generated)

    started = time.perf_counter()
    await beam_search(
        counted,
        width=width,
        n=1,
        max_tokens=10,
        early_stopping="never",
        eos_ids=frozenset({1, 106}),
        prompt_len=len(prompt_ids),
    )
    elapsed = time.perf_counter() - started
    print(
        f"\nwidth {width}: {elapsed / len(rounds) * 1000:.0f} ms per step (all beams), "
        f"{sorted(calls)[len(calls) // 2] * 1000:.0f} ms median engine call, {len(calls)} calls"
    )
    assert len(calls) <= 1 + (len(rounds) - 1) * width
