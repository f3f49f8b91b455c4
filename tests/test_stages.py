"""The stage seam, through the real server: request stages rewrite, refuse or answer a
request; response stages see complete answers, and streams under their declared policy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.segments import Sentences, Whole
from crossroads.pipeline.stages import (
    Stage,
    StageSelector,
    StreamCheck,
    StreamPolicy,
    StreamRefusal,
)
from crossroads.protocol.errors import GatewayError
from crossroads.server.app import create_app
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp, serve_in_thread
from tests.conftest import API_KEY, flush_log, gateway_config

REPLY = "First sentence here. Second one is 3.5 long! Third? Last words"


class _Kind:
    """A kind of stage that runs when the request's `extra.stage` names it."""

    def __init__(self, name: str, stage: Stage, *, before: bool, after: bool) -> None:
        self.name, self.stage, self.before, self.after = name, stage, before, after
        self.selected = 0

    def select(self, chat: PreparedChat) -> Stage | None:
        self.selected += 1
        wanted = (chat.request.extra or {}).get("stages") or []
        return self.stage if self.name in wanted else None


class _Dormant(_Kind):
    """A kind that nothing configured turns on: only a request's `user` field wakes it."""

    def dormant(self) -> frozenset[str]:
        return frozenset({"user"})


class Pruning(Stage):
    """Replaces "secret" with "[pruned]" before the call, and in the log."""

    name = "pruning"

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        messages = [
            {**m, "content": m["content"].replace("secret", "[pruned]")}
            for m in chat.body["messages"]
        ]
        chat.rewrite_messages(messages)
        chat.scrub_log(lambda text: text.replace("secret", "[pruned]"))
        chat.report("pruning", {"pruned": 1})
        return None


class Block(Stage):
    name = "guardrails"

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        chat.report("guardrails", {"blocked": "words"})
        raise GatewayError(
            400,
            "Blocked by guardrail 'words'.",
            type="invalid_request_error",
            code="guardrail_blocked",
        )


class Cache(Stage):
    name = "cache"

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        chat.report("cache", {"hit": True})
        return {
            "id": "chatcmpl-cached",
            "object": "chat.completion",
            "created": 1,
            "model": chat.request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "from the cache"},
                    "finish_reason": "stop",
                }
            ],
        }


class Sentence(StreamCheck):
    def __init__(self, policy: StreamPolicy, refuse: str | None = None) -> None:
        self.policy = policy
        self.refuse = refuse
        self.seen: list[str] = []
        self.finished: dict[str, Any] | None = None

    async def check(self, index: int, text: str) -> str:
        self.seen.append(text)
        if self.refuse and self.refuse in text:
            raise StreamRefusal("[removed]")
        return text.upper()

    def choice_fields(self, index: int) -> dict[str, Any]:
        return {"content_filter_results": {"checked": len(self.seen)}}

    def finish(self, chat: PreparedChat, completion: dict[str, Any]) -> None:
        self.finished = completion
        chat.report("quality", {"pieces": len(self.seen)})


class Upper(Stage):
    """After the call: upper-cases complete answers; streams by the configured check."""

    name = "quality"

    def __init__(self) -> None:
        self.check: Sentence | None = None

    async def after(self, chat: PreparedChat, response: dict[str, Any]) -> None:
        for choice in response["choices"]:
            choice["message"]["content"] = choice["message"]["content"].upper()
            choice["content_filter_results"] = {"upper": True}
        chat.report("quality", {"upper": True})

    def stream(self, chat: PreparedChat) -> StreamCheck | None:
        return self.check


@pytest.fixture(scope="module")
def kinds() -> dict[str, _Kind]:
    return {
        "pruning": _Kind("pruning", Pruning(), before=True, after=False),
        "guardrails": _Kind("guardrails", Block(), before=True, after=False),
        "cache": _Kind("cache", Cache(), before=True, after=False),
        "quality": _Kind("quality", Upper(), before=False, after=True),
        "retrieval": _Dormant("retrieval", Upper(), before=True, after=False),
    }


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream").running_in_thread() as fake:
        yield fake


@pytest.fixture(scope="module")
def served(
    fake: FakeOpenAI, kinds: dict[str, _Kind], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    config = gateway_config(fake, Path(tmp_path_factory.mktemp("db")) / "log.db")
    with serve_in_thread(create_app(config, stages=list(kinds.values()))) as app:
        yield app


@pytest.fixture
def client(served: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


def _record(served: ServedApp, log_id: str) -> dict[str, Any]:
    flush_log(served)
    response = httpx.get(
        f"{served.url}/v1/logs/{log_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def _ask(stages: list[str], content: str = "say secret things", **kwargs: Any) -> dict[str, Any]:
    return {
        "model": "echo",
        "messages": [{"role": "user", "content": content}],
        "extra_body": {"extra": {"stages": stages}},
        **kwargs,
    }


def test_no_stage_asked_changes_nothing(client: OpenAI, kinds: dict[str, _Kind]) -> None:
    before = kinds["quality"].selected
    answer = client.chat.completions.create(**_ask([]))
    assert answer.choices[0].message.content == "say secret things"
    assert kinds["quality"].selected == before + 1  # asked, said no
    assert "quality" not in (answer.model_extra or {})


def test_a_dormant_kind_is_asked_only_by_a_request_that_can_wake_it(
    client: OpenAI, kinds: dict[str, _Kind]
) -> None:
    dormant, awake = kinds["retrieval"], kinds["quality"]
    before = dormant.selected, awake.selected
    client.chat.completions.create(**_ask([]))
    assert (dormant.selected, awake.selected) == (before[0], before[1] + 1)
    client.chat.completions.create(**_ask([]), user="someone")  # its field
    assert dormant.selected == before[0] + 1
    client.chat.completions.create(**_ask([]), extra_headers={"x-crossroads-cache": "bypass"})
    assert dormant.selected == before[0] + 2  # a stage header


def _chat(fields: set[str], *, virtual_key: object = None, header: str | None = None) -> Any:
    context = SimpleNamespace(virtual_key=virtual_key, cache_header=header)
    request = SimpleNamespace(model_fields_set=fields, extra=None)
    return SimpleNamespace(context=context, request=request)


def test_the_selector_wakes_dormant_kinds_for_their_fields_headers_and_virtual_keys() -> None:
    awake = _Kind("quality", Upper(), before=False, after=True)
    dormant = _Dormant("retrieval", Upper(), before=True, after=False)
    selector = StageSelector([awake, dormant])
    assert selector.select(_chat({"model", "messages"})) is None
    assert (awake.selected, dormant.selected) == (1, 0)
    for chat in (
        _chat({"model", "user"}),
        _chat(set(), virtual_key=object()),
        _chat(set(), header="exact"),
    ):
        selector.select(chat)
    assert (awake.selected, dormant.selected) == (4, 3)
    only_dormant = StageSelector([dormant])
    assert only_dormant.select(_chat({"model"})) is None  # no kind asked at all
    assert dormant.selected == 3


def test_a_request_stage_rewrites_what_the_upstream_sees_and_the_log(
    client: OpenAI, served: ServedApp, fake: FakeOpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(**_ask(["pruning"]))
    answer = raw.parse()
    assert answer.choices[0].message.content == "say [pruned] things"
    assert fake.requests[-1]["body"]["messages"][0]["content"] == "say [pruned] things"
    assert (answer.model_extra or {})["pruning"] == {"pruned": 1}
    record = _record(served, raw.headers["x-crossroads-log-id"])
    assert "secret" not in str(record)
    assert record["request"]["messages"][0]["content"] == "say [pruned] things"
    assert record["response"]["pruning"] == {"pruned": 1}


def test_a_request_stage_refuses_with_an_error_envelope_and_a_record(
    client: OpenAI, served: ServedApp, fake: FakeOpenAI
) -> None:
    sent = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.with_raw_response.create(**_ask(["guardrails"]))
    error = caught.value
    assert error.code == "guardrail_blocked"
    assert len(fake.requests) == sent  # never reached the upstream
    record = _record(served, error.response.headers["x-crossroads-log-id"])
    assert record["status_code"] == 400
    assert record["error_code"] == "guardrail_blocked"
    assert record["response"]["guardrails"] == {"blocked": "words"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_stage_answers_itself_and_response_stages_still_run(
    client: OpenAI, served: ServedApp, fake: FakeOpenAI, kinds: dict[str, _Kind], stream: bool
) -> None:
    sent = len(fake.requests)
    cast: Any = kinds["quality"].stage
    cast.check = None
    if stream:
        chunks = list(client.chat.completions.create(**_ask(["cache", "quality"], stream=True)))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        tail = chunks[-1].model_extra or {}
        assert tail["cache"] == {"hit": True} and tail["quality"] == {"upper": True}
    else:
        answer = client.chat.completions.create(**_ask(["cache", "quality"]))
        text = answer.choices[0].message.content or ""
        assert (answer.model_extra or {})["cache"] == {"hit": True}
    assert text == "FROM THE CACHE"
    assert len(fake.requests) == sent


def test_a_response_stage_sees_and_rewrites_the_complete_answer(
    client: OpenAI, served: ServedApp
) -> None:
    raw = client.chat.completions.with_raw_response.create(**_ask(["quality"], "hello there"))
    answer = raw.parse()
    assert answer.choices[0].message.content == "HELLO THERE"
    assert (answer.choices[0].model_extra or {})["content_filter_results"] == {"upper": True}
    record = _record(served, raw.headers["x-crossroads-log-id"])
    assert record["response"]["choices"][0]["message"]["content"] == "HELLO THERE"
    assert record["response"]["quality"] == {"upper": True}


@contextlib.contextmanager
def _checking(kinds: dict[str, _Kind], check: Sentence) -> Iterator[Sentence]:
    stage: Any = kinds["quality"].stage
    stage.check = check
    try:
        yield check
    finally:
        stage.check = None


def _stream(client: OpenAI, **kwargs: Any) -> tuple[list[Any], str]:
    chunks = list(client.chat.completions.create(**_ask(["quality"], REPLY, stream=True, **kwargs)))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


def test_a_stream_is_checked_sentence_by_sentence(
    client: OpenAI, served: ServedApp, kinds: dict[str, _Kind]
) -> None:
    with _checking(kinds, Sentence("sentence")) as check:
        chunks, text = _stream(client)
    assert text == REPLY.upper()
    assert check.seen == [
        "First sentence here. ",
        "Second one is 3.5 long! ",
        "Third? ",
        "Last words",
    ]
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[0].choices[0].finish_reason == "stop"
    assert (finish[0].choices[0].model_extra or {})["content_filter_results"] == {"checked": 4}
    assert (chunks[-1].model_extra or {})["quality"] == {"pieces": 4}
    assert check.finished is not None
    assert check.finished["choices"][0]["message"]["content"] == REPLY.upper()


def test_a_held_stream_is_checked_whole(client: OpenAI, kinds: dict[str, _Kind]) -> None:
    with _checking(kinds, Sentence("hold")) as check:
        _chunks, text = _stream(client)
    assert check.seen == [REPLY]
    assert text == REPLY.upper()


def test_a_passed_stream_is_only_seen_at_the_end(client: OpenAI, kinds: dict[str, _Kind]) -> None:
    with _checking(kinds, Sentence("pass")) as check:
        _chunks, text = _stream(client)
    assert check.seen == []
    assert text == REPLY
    assert check.finished is not None


def test_a_refused_sentence_ends_its_choice_with_content_filter(
    client: OpenAI, served: ServedApp, kinds: dict[str, _Kind]
) -> None:
    with _checking(kinds, Sentence("sentence", refuse="3.5")):
        chunks, text = _stream(client)
    assert text == "FIRST SENTENCE HERE. [removed]"
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert reasons[-1] == "content_filter"
    assert reasons.count("content_filter") == 1 and "stop" not in reasons


def test_sentences_wait_for_the_space_after_the_stop() -> None:
    cut = Sentences()
    assert cut.push("It costs 3.") == []
    assert cut.push("5 dollars. Then") == ["It costs 3.5 dollars. "]
    assert cut.push(" more\nand") == ["Then more\n"]
    assert cut.flush() == ["and"]
    assert cut.flush() == []
    whole = Whole()
    assert whole.push("a. b. ") == [] and whole.flush() == ["a. b. "]
    assert Sentences().push("x" * 2500) == ["x" * 1000, "x" * 1000]
