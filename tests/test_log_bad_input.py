"""The request log under bad input, through the real server, on SQLite and on PostgreSQL.

Whatever a request carries, its record is stored (repaired if it must be) and the writer
goes on; whatever a row holds, reading the log answers; every mistake in a log or usage
query is a 400 naming the parameter, and the admin API answers bad keys the same way.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from crossroads.server.auth import MASTER_KEY_ENV
from crossroads.server.log_query import MAX_JSON_FILTERS
from crossroads.storage.records import LogRecord, new_log_id
from crossroads.storage.storable import MAX_INDEXED_TEXT, MAX_STORED_DEPTH
from crossroads.storage.writer import LogWriter
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, PG_URL, flush_log, gateway_config, running_gateway

MASTER = "mk-log-bad-input-0123456789abcdef"
HELLO = [{"role": "user", "content": "hello there"}]
PG_ADMIN = PG_URL.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + "/postgres"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set")
    pytest.skip(f"{reason} (set CI to make this fail)")


async def _admin_statement(statement: str) -> None:
    engine = create_async_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A fresh database on the backend under test, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('log-bad-input') / 'gateway.db'}"
        return
    name = f"crossroads_log_bad_input_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_admin_statement(f'CREATE DATABASE "{name}"'))
    except (OSError, sa.exc.DBAPIError) as error:
        _unavailable(f"PostgreSQL is unreachable: {error}")
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin_statement(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def served(
    database_url: str, fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    config = gateway_config(fake_upstream, tmp_path_factory.mktemp("unused") / "x.db")
    storage = config.storage.model_copy(update={"database_url": database_url})
    config = config.model_copy(update={"storage": storage})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        with running_gateway(config) as gateway:
            yield gateway


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        metafunc.parametrize(
            "database_url",
            ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
            indirect=True,
            scope="module",
        )


# --- helpers ---------------------------------------------------------------------------------


def _auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(served: ServedApp, headers: dict[str, str] | None = None, **body: Any) -> str:
    """Send a chat request that must succeed; its log id."""
    response = httpx.post(
        f"{served.url}/v1/chat/completions",
        content=orjson.dumps({"model": "echo", "messages": HELLO, **body}),
        headers={**_auth(), "Content-Type": "application/json", **(headers or {})},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    log_id: str = response.headers["x-crossroads-log-id"]
    return log_id


def logs(served: ServedApp, query: str = "", key: str = API_KEY) -> httpx.Response:
    return httpx.get(f"{served.url}/v1/logs?{query}", headers=_auth(key), timeout=30)


def listed_ids(served: ServedApp, query: str) -> list[str]:
    response = logs(served, query)
    assert response.status_code == 200, response.text
    return [record["id"] for record in response.json()["data"]]


def record(served: ServedApp, log_id: str) -> dict[str, Any]:
    response = httpx.get(f"{served.url}/v1/logs/{quote(log_id)}", headers=_auth(), timeout=30)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def assert_error(
    response: httpx.Response, status: int, code: str, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


def deep_json(depth: int) -> str:
    return '{"x":' * depth + '"leaf"' + "}" * depth


def writer(served: ServedApp) -> LogWriter:
    log_writer: LogWriter = served.app.state.crossroads.log_writer
    return log_writer


def submit(served: ServedApp, *records: LogRecord) -> None:
    """Hand records to the running gateway's own log writer, as a request would."""

    async def hand_over() -> None:
        for log_record in records:
            writer(served).submit(log_record)

    served.call(hand_over())


def a_record(**fields: Any) -> LogRecord:
    values: dict[str, Any] = {
        "id": new_log_id(),
        "created_at": datetime.now(UTC),
        "model_requested": "echo",
        "status_code": 200,
        "key_id": "main",
    }
    return LogRecord(**(values | fields))


def insert_raw(served: ServedApp, **columns: Any) -> None:
    """Insert a request-log row as another tool (or an older version) might have written
    it: JSON columns given as their stored text (cast on PostgreSQL), dated 2020."""
    engine = served.app.state.crossroads.log_store.engine
    postgres = engine.dialect.name == "postgresql"
    json_columns = {"request", "response", "metadata", "extra", "tags"}
    columns["created_at"] = (
        datetime(2020, 1, 1, tzinfo=UTC) if postgres else "2020-01-01 00:00:00.000000"
    )
    names = ", ".join(f'"{name}"' for name in columns)
    values = ", ".join(
        f"CAST(:{name} AS JSON)" if postgres and name in json_columns else f":{name}"
        for name in columns
    )
    statement = sa.text(f"INSERT INTO request_log ({names}) VALUES ({values})")

    async def run() -> None:
        async with engine.begin() as connection:
            await connection.execute(statement, columns)

    served.call(run())


# --- the writer: a record that cannot be stored as it is --------------------------------------


def test_a_record_nested_too_deep_is_stored_with_a_note_and_the_rest_still_written(
    served: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    before = chat(served, user="before-deep")
    deep = a_record(metadata=nested(1000), request={"messages": HELLO, "deep": nested(1000)})
    submit(served, deep)
    after = chat(served, user="after-deep")
    with caplog.at_level(logging.WARNING, logger="crossroads.storage"):
        flush_log(served)
    assert writer(served).pending == 0
    stored = record(served, deep.id)
    reason = f"nested more than {MAX_STORED_DEPTH} levels deep"
    assert stored["metadata"] == {"not_stored": reason}
    assert stored["request"] == {"not_stored": reason}
    assert stored["status_code"] == 200 and stored["model_requested"] == "echo"
    assert record(served, before)["user"] == "before-deep"
    assert record(served, after)["user"] == "after-deep"
    notes = [r for r in caplog.records if deep.id in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in notes]


def test_nesting_within_the_storage_cap_is_stored_as_it_is(served: ServedApp) -> None:
    within = a_record(response={"choices": [], "vendor": nested(MAX_STORED_DEPTH - 2)})
    submit(served, within)
    flush_log(served)
    assert record(served, within.id)["response"]["vendor"] == nested(MAX_STORED_DEPTH - 2)


def test_a_record_the_database_refuses_is_stored_stripped_and_the_batch_kept(
    served: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    # No model: the database refuses the record as it is (the column is NOT NULL).
    refused = a_record(
        model_requested=None, user="refused", request={"messages": HELLO}, metadata={"team": "a"}
    )
    neighbours = [a_record(user=f"neighbour-{i}") for i in range(3)]
    submit(served, neighbours[0], refused, *neighbours[1:])
    with caplog.at_level(logging.WARNING, logger="crossroads.storage"):
        flush_log(served)
    assert writer(served).pending == 0
    stored = record(served, refused.id)
    assert (stored["user"], stored["model_requested"]) == ("refused", "")
    assert stored["request"]["not_stored"].startswith("the database refused this record")
    assert stored["metadata"] == stored["request"]
    for neighbour in neighbours:
        assert record(served, neighbour.id)["user"] == neighbour.user
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in errors if refused.id in r.getMessage()]) == 1


def test_an_overlong_indexed_value_is_cut_and_nothing_stalls(
    served: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    # PostgreSQL refuses an index row over 2,704 bytes: a 5,000-character session id (a
    # request answered 400 for it still has its record) once stalled the writer for good.
    long_session = "word " * 1000
    long = a_record(session_id=long_session, model_requested="m" * 3000, user="long")
    after = a_record(user="after-long")
    submit(served, long, after)
    with caplog.at_level(logging.WARNING, logger="crossroads.storage"):
        flush_log(served)
    assert writer(served).pending == 0
    stored = record(served, long.id)
    assert stored["session_id"] == long_session[:MAX_INDEXED_TEXT]
    assert stored["model_requested"] == "m" * MAX_INDEXED_TEXT
    assert record(served, after.id)["user"] == "after-long"
    # A filter longer than the cut matches what was kept.
    assert listed_ids(served, f"session_id={quote(long_session[:700])}") == [long.id]
    rejected = served.url + "/v1/chat/completions"
    response = httpx.post(
        rejected,
        json={"model": "echo", "messages": HELLO, "session_id": long_session},
        headers=_auth(),
        timeout=30,
    )
    assert_error(response, 400, "invalid_value", "session_id")
    flush_log(served)
    assert writer(served).pending == 0
    assert record(served, response.headers["x-crossroads-log-id"])["status_code"] == 400


def test_a_record_refused_even_stripped_is_dropped_with_one_error_and_nothing_stalls(
    served: ServedApp, caplog: pytest.LogCaptureFixture
) -> None:
    first = a_record(user="original")
    submit(served, first)
    flush_log(served)
    duplicate = a_record(id=first.id, user="duplicate")  # the primary key refuses it
    kept = a_record(user="kept")
    rejected = writer(served).rejected
    with caplog.at_level(logging.WARNING, logger="crossroads.storage"):
        submit(served, duplicate, kept)
        flush_log(served)
    assert writer(served).pending == 0
    assert writer(served).rejected == rejected + 1
    assert record(served, first.id)["user"] == "original"
    assert record(served, kept.id)["user"] == "kept"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and first.id in r.message]
    assert len(errors) == 1
    chat(served)  # the writer still writes
    flush_log(served)


class _Outage:
    """The gateway's database unavailable for a while: on SQLite a lock held by another
    connection, on PostgreSQL the database closed to connections and its sessions ended."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._lock: sqlite3.Connection | None = None

    def __enter__(self) -> None:
        if self._url.startswith("sqlite"):
            self._lock = sqlite3.connect(self._url.split("///", 1)[1], isolation_level=None)
            self._lock.execute("BEGIN EXCLUSIVE")
            return
        name = self._url.rsplit("/", 1)[1]
        asyncio.run(_admin_statement(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        asyncio.run(
            _admin_statement(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        )

    def __exit__(self, *_: object) -> None:
        if self._lock is not None:
            self._lock.rollback()
            self._lock.close()
            return
        name = self._url.rsplit("/", 1)[1]
        asyncio.run(_admin_statement(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))


def test_a_database_outage_keeps_records_queued_until_it_ends(
    served: ServedApp, database_url: str
) -> None:
    queued = a_record(user="through-an-outage")
    with _Outage(database_url):
        submit(served, queued)
        with pytest.raises((sqlite3.OperationalError, sa.exc.DBAPIError)) as failure:
            flush_log(served)
        assert writer(served).pending >= 1, failure.value
    flush_log(served)
    assert writer(served).pending == 0
    assert record(served, queued.id)["user"] == "through-an-outage"


# --- NUL characters ---------------------------------------------------------------------------


def test_nul_characters_are_stored_as_replacement_characters_and_found_by_filters(
    served: ServedApp,
) -> None:
    log_id = chat(
        served,
        user="u\u0000",
        metadata={"k\u0000": "v\u0000", "team": "nul"},
        messages=[{"role": "user", "content": "a\u0000b"}],
        headers={"x-session-id": "nul-session"},
    )
    flush_log(served)
    stored = record(served, log_id)
    assert stored["user"] == "u\ufffd"
    assert stored["metadata"] == {"k\ufffd": "v\ufffd", "team": "nul"}
    assert stored["request"]["messages"][0]["content"] == "a\ufffdb"
    # A filter is compared as stored: its NUL matches the replacement character.
    assert listed_ids(served, "user=u%00") == [log_id]
    replaced = quote("\ufffd")
    assert listed_ids(served, f"user=u{replaced}") == [log_id]
    assert listed_ids(served, f"metadata.k{replaced}=v%00") == [log_id]
    assert listed_ids(served, "metadata.team=nul") == [log_id]


def test_text_no_database_takes_is_kept_with_replacement_characters(served: ServedApp) -> None:
    """A NUL in an upstream's error message; unpaired surrogates (which no UTF-8 text can
    hold) in text, in JSON strings and keys; integers beyond 64 bits and numbers no column
    holds: the record is stored, bodies and all."""
    log_record = a_record(
        status_code=502,
        error_message="upstream said \u0000 oops",
        user="u\ud800",
        response={"k\udfff": ["v\ud800", 2**70]},
        prompt_tokens=2**40,
        cost=float("nan"),
        latency_ms=1e308,
    )
    submit(served, log_record)
    flush_log(served)
    stored = record(served, log_record.id)
    assert stored["error_message"] == "upstream said \ufffd oops"
    assert stored["user"] == "u\ufffd"
    assert stored["response"] == {"k\ufffd": ["v\ufffd", float(2**70)]}
    assert stored["prompt_tokens"] is stored["cost"] is stored["latency_ms"] is None
    usage = httpx.get(f"{served.url}/v1/usage?group_by=model", headers=_auth())
    assert usage.status_code == 200, usage.text


# --- reading odd rows -------------------------------------------------------------------------


def _odd_rows(served: ServedApp) -> dict[str, str]:
    """Rows as an older version or another tool could have stored them, by what is odd."""
    postgres = served.app.state.crossroads.log_store.engine.dialect.name == "postgresql"
    odd = {
        "deep": deep_json(300),
        "deeper than any decoder": deep_json(1100),
        "escaped nul": '{"team": "odd", "k": "x\\u0000y"}',
    }
    if not postgres:  # PostgreSQL's json type refuses these on the way in
        odd["not json"] = "{not json"
        odd["nan"] = '{"cost": NaN}'
    ids = {}
    for what, metadata in odd.items():
        log_id = new_log_id()
        insert_raw(
            served,
            id=log_id,
            model_requested="odd",
            status_code=200,
            stream=False,
            key_id="main",
            cost=1e308,  # summed, these overflow a float
            metadata=metadata,
            tags=metadata,
            extra=metadata,
            response=metadata,
        )
        ids[what] = log_id
    return ids


def test_odd_stored_rows_never_fail_reading_the_log(served: ServedApp) -> None:
    ids = _odd_rows(served)
    listed = logs(served, "model=odd&limit=1000")
    assert listed.status_code == 200, listed.text
    by_id = {r["id"]: r for r in listed.json()["data"]}
    assert set(ids.values()) <= set(by_id)
    assert by_id[ids["deep"]]["metadata"] == {
        "not_stored": f"the stored value nests more than {MAX_STORED_DEPTH} levels deep"
    }
    assert by_id[ids["deeper than any decoder"]]["metadata"] == {
        "not_stored": "the stored value is not JSON that can be read back"
    }
    assert by_id[ids["escaped nul"]]["metadata"] == {"team": "odd", "k": "x\u0000y"}
    for log_id in ids.values():
        assert record(served, log_id)["id"] == log_id
    # JSON filters run over every odd row without failing.
    for query in (
        "model=odd&metadata.team=odd",
        "model=odd&extra.team=odd",
        "model=odd&tags=odd",
        "metadata.team=odd",
    ):
        response = logs(served, query)
        assert response.status_code == 200, (query, response.text)
    assert listed_ids(served, "model=odd&metadata.team=odd") == [ids["escaped nul"]]
    usage = httpx.get(f"{served.url}/v1/usage?group_by=model", headers=_auth())
    assert usage.status_code == 200, usage.text


@pytest.mark.parametrize("log_id", ["%00", "x" * 5000, "%FF%FE", "%C3%A9t%C3%A9", "'; DROP"])
def test_a_malformed_log_id_is_a_404(served: ServedApp, log_id: str) -> None:
    response = httpx.get(f"{served.url}/v1/logs/{log_id}", headers=_auth())
    assert_error(response, 404, "log_not_found")


# --- query parameters -------------------------------------------------------------------------

BAD_LOG_QUERIES = [
    ("start=inf", "start", "invalid_value"),
    ("start=nan", "start", "invalid_value"),
    ("end=1e20", "end", "invalid_value"),
    ("start=99999999999999", "start", "invalid_value"),
    ("end=9999-12-31T23:00:00-14:00", "end", "invalid_value"),
    ("start=0001-01-01T00:00:00%2B14:00", "start", "invalid_value"),
    ("start=yesterday", "start", "invalid_value"),
    ("start=1&start=2", "start", "invalid_value"),
    ("metadata.%00=1", "metadata.\u0000", "invalid_value"),
    ("metadata.=1", "metadata.", "invalid_value"),
    ('metadata.a"b=1', 'metadata.a"b', "invalid_value"),
    ("metadata.a%5Cb=1", "metadata.a\\b", "invalid_value"),
    ("metadata.a=1&metadata.a=2", "metadata.a", "invalid_value"),
    ("limit=0", "limit", "invalid_value"),
    ("limit=1001", "limit", "invalid_value"),
    ("limit=%C2%B2", "limit", "invalid_value"),
    ("limit=-1", "limit", "invalid_value"),
    ("status=abc", "status", "invalid_value"),
    ("status=%C2%B2%C2%B2%C2%B2", "status", "invalid_value"),
    ("model=" + "m" * 2000, "model", "invalid_value"),
    ("country=NL", "country", "unknown_parameter"),
    ("Country=NL", "Country", "unknown_parameter"),
    ("meta.team=a", "meta.team", "unknown_parameter"),
    ("key_id=other", "key_id", "unknown_parameter"),
]


@pytest.mark.parametrize(("query", "param", "code"), BAD_LOG_QUERIES)
def test_a_bad_log_query_is_a_400_naming_the_parameter(
    served: ServedApp, query: str, param: str, code: str
) -> None:
    assert_error(logs(served, query), 400, code, param)


def test_too_many_json_filters_is_a_400(served: ServedApp) -> None:
    many = "&".join(f"metadata.k{i}=v" for i in range(2000))
    assert_error(logs(served, many), 400, "too_many_filters", "metadata")
    at_most = "&".join(f"metadata.k{i}=v" for i in range(MAX_JSON_FILTERS))
    assert logs(served, at_most).status_code == 200
    one_more = at_most + "&tags=x"
    assert_error(logs(served, one_more), 400, "too_many_filters")


def test_the_documented_maximum_limit_is_accepted(served: ServedApp) -> None:
    response = logs(served, "limit=1000")
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) <= 1000


def test_far_times_inside_the_range_are_accepted(served: ServedApp) -> None:
    for query in (
        "start=0&end=253402300799",
        "end=9999-12-31T23:00:00%2B14:00",
        "start=0001-01-02T00:00:00Z",
        "start=2020-01-01T00:00:00&end=2030-01-01",
    ):
        response = logs(served, query)
        assert response.status_code == 200, (query, response.text)


BAD_USAGE_QUERIES = [
    ("start=inf", "start", "invalid_value"),
    ("end=1e20", "end", "invalid_value"),
    ("end=9999-12-31T23:00:00-14:00", "end", "invalid_value"),
    ("group_by=week", "group_by", "invalid_value"),
    ("group_by=day&group_by=model", "group_by", "invalid_value"),
    ("tags=x", "tags", "unknown_parameter"),
    ("metadata.team=a", "metadata.team", "unknown_parameter"),
]


@pytest.mark.parametrize(("query", "param", "code"), BAD_USAGE_QUERIES)
def test_a_bad_usage_query_is_a_400_naming_the_parameter(
    served: ServedApp, query: str, param: str, code: str
) -> None:
    response = httpx.get(f"{served.url}/v1/usage?{query}", headers=_auth())
    assert_error(response, 400, code, param)


# --- the user, tags and extra filters ---------------------------------------------------------


def test_user_tags_and_extra_filters_select_records(served: ServedApp) -> None:
    marker = uuid.uuid4().hex[:8]
    nl = chat(
        served,
        user=f"alice-{marker}",
        extra={"Country": f"NL-{marker}"},
        headers={"x-crossroads-tags": f"beta-{marker}, eval-{marker}"},
    )
    fr = chat(
        served,
        user=f"bob-{marker}",
        extra={"Country": f"FR-{marker}"},
        headers={"x-crossroads-tags": f"beta-{marker}"},
    )
    flush_log(served)
    assert listed_ids(served, f"user=alice-{marker}") == [nl]
    assert listed_ids(served, f"extra.Country=FR-{marker}") == [fr]
    assert listed_ids(served, f"tags=beta-{marker}") == [fr, nl]
    assert listed_ids(served, f"tags=beta-{marker},eval-{marker}") == [nl]
    assert listed_ids(served, f"tags=beta-{marker}&tags=eval-{marker}") == [nl]
    assert listed_ids(served, f"tags=beta-{marker}&user=bob-{marker}") == [fr]
    assert listed_ids(served, f"extra.Country=DE-{marker}") == []


# --- the admin API ----------------------------------------------------------------------------


def _admin(method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, path, headers=_auth(MASTER), timeout=30, **kwargs)


@pytest.mark.parametrize(
    "expires_at",
    [
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59Z",
        "9999-01-01",
        "2999-01-01T00:00:00Z",
        1e20,
        "1e20",
        "inf",
        "+275760-09-13T00:00:00Z",
    ],
)
def test_an_expiry_too_far_away_is_a_400(served: ServedApp, expires_at: Any) -> None:
    response = _admin(
        "POST", f"{served.url}/admin/keys", json={"name": "far", "expires_at": expires_at}
    )
    assert_error(response, 400, "invalid_value", "expires_at")
    listed = _admin("GET", f"{served.url}/admin/keys")
    assert listed.status_code == 200, listed.text


def test_an_expiry_within_a_century_is_accepted(served: ServedApp) -> None:
    response = _admin(
        "POST", f"{served.url}/admin/keys", json={"name": "long", "expires_at": "2100-01-01"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["expires_at"].startswith("2100-01-01")


def test_deep_metadata_on_a_key_is_a_400_and_listing_keys_still_answers(
    served: ServedApp,
) -> None:
    body = orjson.dumps({"name": "deep", "metadata": nested(60)})[:-1]
    deep = body + b',"extra_meta":' + deep_json(1000).encode() + b"}"
    assert_error(_admin("POST", f"{served.url}/admin/keys", content=deep), 400, "json_too_deep")
    # Within the body's cap, a key with nested metadata is made and listed.
    made = _admin("POST", f"{served.url}/admin/keys", json={"name": "n", "metadata": nested(60)})
    assert made.status_code == 200, made.text
    assert _admin("GET", f"{served.url}/admin/keys").status_code == 200


def test_an_odd_stored_key_never_fails_the_admin_api_or_its_caller(served: ServedApp) -> None:
    made = _admin("POST", f"{served.url}/admin/keys", json={"name": "odd", "models": ["echo"]})
    assert made.status_code == 200, made.text
    key = made.json()
    engine = served.app.state.crossroads.log_store.engine
    postgres = engine.dialect.name == "postgresql"
    metadata, models = ("CAST(:m AS JSON)", "CAST(:l AS JSON)") if postgres else (":m", ":l")
    update = f"UPDATE virtual_keys SET metadata = {metadata}, models = {models} WHERE id = :id"

    async def corrupt() -> None:
        async with engine.begin() as connection:
            await connection.execute(
                sa.text(update), {"m": deep_json(300), "l": '{"not": "a list"}', "id": key["id"]}
            )

    served.call(corrupt())
    served.app.state.crossroads.key_cache.clear()
    listed = _admin("GET", f"{served.url}/admin/keys")
    assert listed.status_code == 200, listed.text
    shown = next(k for k in listed.json()["data"] if k["id"] == key["id"])
    assert shown["metadata"] == {
        "not_stored": f"the stored value nests more than {MAX_STORED_DEPTH} levels deep"
    }
    one = _admin("GET", f"{served.url}/admin/keys/{key['id']}")
    assert one.status_code == 200, one.text
    # Models that cannot be read allow no model at all, never every model.
    assert one.json()["models"] == []
    response = httpx.post(
        f"{served.url}/v1/chat/completions",
        json={"model": "echo", "messages": HELLO},
        headers=_auth(key["key"]),
    )
    assert_error(response, 403, "model_not_allowed")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "a\u0000"}, "name"),
        ({"team": "\u0000"}, "team"),
        ({"models": ["echo", "e\u0000"]}, "models[1]"),
        ({"metadata": {"k": ["v\u0000"]}}, "metadata"),
        ({"metadata": {"k\u0000": 1}}, "metadata"),
    ],
)
def test_a_nul_in_a_key_setting_is_a_400_on_create_and_update(
    served: ServedApp, body: dict[str, Any], param: str
) -> None:
    created = _admin("POST", f"{served.url}/admin/keys", json=body)
    assert_error(created, 400, "invalid_value", param)
    made = _admin("POST", f"{served.url}/admin/keys", json={"name": "clean"})
    assert made.status_code == 200, made.text
    patched = _admin("PATCH", f"{served.url}/admin/keys/{made.json()['id']}", json=body)
    assert_error(patched, 400, "invalid_value", param)
    assert _admin("GET", f"{served.url}/admin/keys").status_code == 200


@pytest.mark.parametrize("key_id", ["hello\u0000", "\ud800x"])
def test_a_key_id_no_store_can_hold_is_a_404(served: ServedApp, key_id: str) -> None:
    path = f"{served.url}/admin/keys/{quote(key_id.encode('utf-8', 'surrogatepass'))}"
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        response = _admin(method, path, json=body) if body else _admin(method, path)
        assert_error(response, 404, "key_not_found")


# --- mutated queries --------------------------------------------------------------------------

_FUZZ_NAMES = [
    *("start", "end", "model", "status", "session_id", "user", "tags", "limit", "before"),
    *("group_by", "metadata.team", "metadata.", "metadata.\u0000", 'metadata."', "extra.Country"),
    *(
        "extra.",
        "foo",
        "Tags",
        "key_id",
        "metadata.\U0001f642",
        "metadata.\\",
        "metadata." + "k" * 300,
    ),
]
_FUZZ_VALUES = [
    *("", "inf", "-inf", "nan", "1e20", "1e308", "-1", "0", "1", "1000", "1001", "253402300799"),
    *("253402300800", "9999-12-31T23:00:00-14:00", "0001-01-01T00:00:00+14:00", "2026-13-01"),
    *("\u0000", "a\u0000b", "\u00e9", "\U0001f642", "'", '"', "\\", "%", "x" * 3000, "ok", "429"),
    *("\u00b2", "\u0661\u0662\u0663", "day", "week", "null", "[]", ",", ",,a,,", "a,b,c"),
]


def test_mutated_log_and_usage_queries_are_never_a_5xx(served: ServedApp) -> None:
    rng = random.Random(14)
    statuses: collections.Counter[int] = collections.Counter()
    with httpx.Client(base_url=served.url, headers=_auth(), timeout=30) as http:
        for i in range(400):
            pairs = [(rng.choice(_FUZZ_NAMES), rng.choice(_FUZZ_VALUES)) for _ in range(7)]
            parts = [f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in pairs]
            parts = parts[: rng.randint(0, 6)]
            if rng.random() < 0.05:
                parts += [f"metadata.k{n}=v" for n in range(rng.randint(15, 40))]
            response = http.get(f"{'/v1/usage' if i % 4 == 0 else '/v1/logs'}?{'&'.join(parts)}")
            statuses[response.status_code] += 1
            assert response.status_code in (200, 400), (parts, response.text)
            if response.status_code == 400:
                assert response.json()["error"]["code"], response.text
    assert statuses[200] > 50 and statuses[400] > 50
