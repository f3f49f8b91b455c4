"""Virtual keys: the store (SQLite and PostgreSQL), each replica's cache, authentication,
the admin API end to end through a served gateway and the OpenAI SDK, and `crossroads keys`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import sqlalchemy as sa
from openai import OpenAI
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from crossroads.access import check_model_allowed
from crossroads.cli import app as cli
from crossroads.config import Config, KeyConfig, parse_config
from crossroads.protocol.errors import GatewayError
from crossroads.server.auth import MASTER_KEY_ENV, KeyRing, loopback_only, master_key_from_env
from crossroads.server.key_cache import KEY_CACHE_TTL, KeyCache
from crossroads.storage.database import create_engine
from crossroads.storage.key_store import KeyStore, VirtualKey, hash_secret
from crossroads.storage.schema import virtual_keys
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import (
    API_KEY,
    PG_URL,
    flush_log,
    gateway_config,
    postgres_engine,
    running_gateway,
)

MASTER = "mk-test-0123456789abcdef"
SECRET = re.compile(r"^sk-cr-[A-Za-z0-9_-]{32}$")
FUTURE = datetime(2099, 1, 1, tzinfo=UTC)

runner = CliRunner()


# --- the store (SQLite and PostgreSQL) ------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def key_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        sqlite = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        yield sqlite
        await sqlite.dispose()
    else:
        async for pg in postgres_engine("test_keys"):
            yield pg


@pytest.fixture
async def store(key_engine: AsyncEngine) -> KeyStore:
    key_store = KeyStore(key_engine)
    await key_store.open()
    return key_store


SETTINGS: dict[str, Any] = {
    "name": "backend ✓",
    "team": "search",
    "models": ["gpt-4o", "echo"],
    "max_budget": 12.5,
    "budget_period": "monthly",
    "rpm_limit": 60,
    "tpm_limit": 100_000,
    "max_parallel_requests": 4,
    "expires_at": FUTURE,
    "metadata": {"env": "prod", "owner": {"email": "ops@example.com"}, "ü": [1, None]},
}


def test_schema_has_one_column_per_record_field() -> None:
    fields = [field.name for field in dataclasses.fields(VirtualKey)]
    assert [column.name for column in virtual_keys.columns] == fields


async def test_create_shows_the_secret_once_and_stores_only_its_digest(store: KeyStore) -> None:
    record, secret = await store.create(**SETTINGS)
    assert SECRET.match(secret)
    assert re.match(r"^key_[0-9a-f]{24}$", record.id)
    assert record.key_hash == hashlib.sha256(secret.encode()).hexdigest() == hash_secret(secret)
    assert record.key_prefix == secret[:10] + "…"
    assert record.status() == "active"
    assert record.revoked_at is None
    assert record.created_at == record.updated_at
    assert record.created_at.tzinfo is UTC
    async with store.engine.connect() as connection:
        rows = (await connection.execute(sa.select(virtual_keys))).all()
    assert len(rows) == 1
    assert secret not in repr(rows[0])  # stored hashed, never in clear
    assert await store.get(record.id) == record
    assert await store.find_by_secret(secret) == record
    assert await store.find_by_secret(secret + "x") is None
    assert await store.get("key_missing") is None
    _, other = await store.create()
    assert other != secret


async def test_every_setting_round_trips(store: KeyStore) -> None:
    record, _ = await store.create(**SETTINGS)
    got = await store.get(record.id)
    assert got is not None
    for name, value in SETTINGS.items():
        expected = tuple(value) if name == "models" else value
        assert getattr(got, name) == expected, name
    assert got.expires_at is not None and got.expires_at.tzinfo is UTC
    bare, _ = await store.create()
    assert await store.get(bare.id) == bare
    assert (bare.models, bare.metadata, bare.max_budget, bare.name) == (None, {}, None, None)


async def test_list_filters_by_team_and_hides_revoked_keys(store: KeyStore) -> None:
    a1, _ = await store.create(name="a1", team="a")
    a2, _ = await store.create(name="a2", team="a")
    b1, _ = await store.create(name="b1", team="b")
    expired, _ = await store.create(name="gone", expires_at=datetime.now(UTC) + timedelta(0, 0.01))
    await asyncio.sleep(0.02)
    await store.revoke(a2.id)
    ids = [k.id for k in await store.list()]
    assert ids == [a1.id, b1.id, expired.id]  # oldest first; expired keys are still listed
    assert [k.id for k in await store.list(include_revoked=True)] == [
        a1.id,
        a2.id,
        b1.id,
        expired.id,
    ]
    assert [k.id for k in await store.list(team="a")] == [a1.id]
    assert [k.id for k in await store.list(team="a", include_revoked=True)] == [a1.id, a2.id]
    assert await store.list(team="nobody") == []
    assert (await store.list())[-1].status() == "expired"


async def test_update_changes_only_what_is_given(store: KeyStore) -> None:
    record, _ = await store.create(**SETTINGS)
    updated = await store.update(record.id, {"rpm_limit": 5, "models": ["echo"], "team": None})
    assert updated is not None
    assert (updated.rpm_limit, updated.models, updated.team) == (5, ("echo",), None)
    assert updated.updated_at > record.updated_at
    unchanged = {
        f: getattr(record, f) for f in SETTINGS if f not in {"rpm_limit", "models", "team"}
    }
    assert {f: getattr(updated, f) for f in unchanged} == unchanged
    assert (updated.key_hash, updated.created_at) == (record.key_hash, record.created_at)
    assert await store.get(record.id) == updated
    assert await store.update(record.id, {}) == updated  # nothing to change: untouched
    cleared = await store.update(record.id, {"models": None, "metadata": None})
    assert cleared is not None and (cleared.models, cleared.metadata) == (None, {})
    assert await store.update("key_missing", {"rpm_limit": 1}) is None
    with pytest.raises(ValueError, match="key_hash"):
        await store.update(record.id, {"key_hash": "0" * 64})


async def test_revoke_is_idempotent_and_keeps_the_record(store: KeyStore) -> None:
    record, secret = await store.create(name="r")
    revoked = await store.revoke(record.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert revoked.status() == "revoked"
    again = await store.revoke(record.id)
    assert again == revoked  # the first revoked_at stays
    found = await store.find_by_secret(secret)
    assert found is not None and found.status() == "revoked"
    assert await store.revoke("key_missing") is None


def test_status_follows_revocation_then_expiry() -> None:
    now = datetime.now(UTC)
    key = _virtual(expires_at=now + timedelta(hours=1))
    assert key.status(now) == "active"
    assert key.status(now + timedelta(hours=2)) == "expired"
    assert dataclasses.replace(key, revoked_at=now).status(now + timedelta(hours=2)) == "revoked"


def _virtual(**fields: Any) -> VirtualKey:
    now = datetime.now(UTC)
    defaults: dict[str, Any] = {
        "id": "key_" + uuid.uuid4().hex[:24],
        "key_hash": "0" * 64,
        "key_prefix": "sk-cr-abcd…",
        "created_at": now,
        "updated_at": now,
    }
    return VirtualKey(**(defaults | fields))


# --- the cache and authentication ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sqlite_keys(tmp_path: Path) -> AsyncIterator[KeyStore]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    key_store = KeyStore(engine)
    await key_store.open()
    yield key_store
    await engine.dispose()


async def test_cache_serves_hits_without_the_database_until_the_ttl(sqlite_keys: KeyStore) -> None:
    clock = Clock()
    cache = KeyCache(sqlite_keys, ttl=5, missing_ttl=1, clock=clock)
    record, secret = await sqlite_keys.create(name="c")
    for _ in range(100):
        assert await cache.lookup(record.key_hash) == record
    assert cache.queries == 1
    await sqlite_keys.revoke(record.id)
    clock.now += 4.9
    assert (await cache.lookup(record.key_hash)) == record  # another replica's view, in the TTL
    clock.now += 0.2
    fresh = await cache.lookup(record.key_hash)
    assert fresh is not None and fresh.status() == "revoked"
    assert cache.queries == 2
    # Unknown digests are remembered briefly too.
    missing = hash_secret("sk-cr-" + "x" * 32)
    assert await cache.lookup(missing) is None
    assert await cache.lookup(missing) is None
    assert cache.queries == 3
    clock.now += 1.1
    assert await cache.lookup(missing) is None
    assert cache.queries == 4
    # `forget` makes the next lookup read the database at once.
    cache.forget(record.key_hash)
    assert await cache.lookup(record.key_hash) == fresh
    assert cache.queries == 5
    assert secret  # the cache never sees secrets, only digests


async def test_cache_shares_one_query_between_concurrent_misses(sqlite_keys: KeyStore) -> None:
    cache = KeyCache(sqlite_keys)
    record, _ = await sqlite_keys.create()
    results = await asyncio.gather(*(cache.lookup(record.key_hash) for _ in range(50)))
    assert results == [record] * 50
    assert cache.queries == 1


async def test_cache_does_not_keep_what_it_read_before_a_forget(sqlite_keys: KeyStore) -> None:
    cache = KeyCache(sqlite_keys)
    record, _ = await sqlite_keys.create()
    lookup = asyncio.ensure_future(cache.lookup(record.key_hash))
    await asyncio.sleep(0)  # the query has started
    cache.forget(record.key_hash)
    assert await lookup == record
    await cache.lookup(record.key_hash)
    assert cache.queries == 2  # the first answer was not cached


async def test_cache_is_bounded(sqlite_keys: KeyStore) -> None:
    cache = KeyCache(sqlite_keys, max_entries=3)
    digests = [hash_secret(f"sk-cr-{i}") for i in range(5)]
    for digest in digests:
        await cache.lookup(digest)
    assert cache.queries == 5
    await cache.lookup(digests[-1])
    await cache.lookup(digests[0])  # evicted: queried again
    assert cache.queries == 6


async def test_authentication_with_virtual_keys(sqlite_keys: KeyStore) -> None:
    cache = KeyCache(sqlite_keys)
    ring = KeyRing([KeyConfig(name="main", key=API_KEY)], master_key=MASTER, virtual_keys=cache)
    assert not ring.open
    record, secret = await sqlite_keys.create(name="svc", rpm_limit=7)
    caller = await ring.authenticate(f"Bearer {secret}", "10.0.0.9")
    assert (caller.key_id, caller.name) == (record.id, "svc")
    assert caller.virtual_key == record
    assert (await ring.authenticate(f"Bearer {API_KEY}", "10.0.0.9")).virtual_key is None
    queries = cache.queries
    for token in ("sk-nope-0123456789", API_KEY + "x"):  # not virtual-key shaped: no query
        with pytest.raises(GatewayError) as caught:
            await ring.authenticate(f"Bearer {token}", "127.0.0.1")
        assert (caught.value.status, caught.value.code) == (401, "invalid_api_key")
    assert cache.queries == queries
    with pytest.raises(GatewayError, match="opens only the admin API") as caught:
        await ring.authenticate(f"Bearer {MASTER}", "127.0.0.1")
    assert caught.value.status == 401
    with pytest.raises(GatewayError) as caught:
        await ring.authenticate(None, "127.0.0.1")  # a master key ends loopback-only mode
    assert caught.value.code == "missing_api_key"

    revoked = await sqlite_keys.revoke(record.id)
    assert revoked is not None
    cache.forget(revoked.key_hash)
    with pytest.raises(GatewayError, match="was revoked at") as caught:
        await ring.authenticate(f"Bearer {secret}", "10.0.0.9")
    assert (caught.value.status, caught.value.code) == (401, "key_revoked")

    soon, soon_secret = await sqlite_keys.create(
        expires_at=datetime.now(UTC) + timedelta(seconds=0.05)
    )
    assert (await ring.authenticate(f"Bearer {soon_secret}", "::1")).key_id == soon.id
    await asyncio.sleep(0.06)  # expiry needs no cache refresh
    with pytest.raises(GatewayError, match="expired at") as caught:
        await ring.authenticate(f"Bearer {soon_secret}", "::1")
    assert (caught.value.status, caught.value.code) == (401, "key_expired")


async def test_an_unreachable_key_store_is_a_503_not_a_500() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:9/none", connect_args={"timeout": 2})
    try:
        ring = KeyRing([], master_key=MASTER, virtual_keys=KeyCache(KeyStore(engine)))
        with pytest.raises(GatewayError) as caught:
            await ring.authenticate("Bearer sk-cr-" + "a" * 32, "127.0.0.1")
        assert (caught.value.status, caught.value.code) == (503, "key_store_unavailable")
    finally:
        await engine.dispose()


def test_admin_authentication() -> None:
    disabled = KeyRing([KeyConfig(name="main", key=API_KEY)])
    with pytest.raises(GatewayError, match=MASTER_KEY_ENV) as caught:
        disabled.authenticate_admin(f"Bearer {API_KEY}")
    assert (caught.value.status, caught.value.code) == (403, "admin_disabled")
    ring = KeyRing([], master_key=MASTER)
    assert ring.authenticate_admin(f"Bearer {MASTER}") is None
    for header in (None, "Bearer", f"Basic {MASTER}", f"Bearer {MASTER}x", f"Bearer {API_KEY}"):
        with pytest.raises(GatewayError) as caught:
            ring.authenticate_admin(header)
        assert caught.value.status == 401


def test_loopback_only_mode_needs_neither_config_keys_nor_a_master_key() -> None:
    key = KeyConfig(name="main", key=API_KEY)
    assert loopback_only([], None)
    assert not loopback_only([], MASTER)
    assert not loopback_only([key], None)
    assert KeyRing([]).open
    assert not KeyRing([], master_key=MASTER).open
    assert master_key_from_env({MASTER_KEY_ENV: f"  {MASTER} "}) == MASTER
    assert master_key_from_env({MASTER_KEY_ENV: " "}) is None
    assert master_key_from_env({}) is None


def test_config_key_names_cannot_pose_as_virtual_key_ids() -> None:
    from crossroads.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="reserved for virtual key ids"):
        parse_config({"keys": [{"name": "key_0123", "key": "sk-x"}]})


def test_check_model_allowed() -> None:
    check_model_allowed(None, ["anything"])
    check_model_allowed(_virtual(models=None), ["anything", "else"])
    limited = _virtual(models=("echo", "fixed"))
    check_model_allowed(limited, ["echo"])
    check_model_allowed(limited, ["fixed", "echo"])
    check_model_allowed(limited, [])
    for names in (["gpt-4o"], ["echo", "gpt-4o"], ["ECHO"]):
        with pytest.raises(GatewayError) as caught:
            check_model_allowed(limited, names)
        error = caught.value
        assert (error.status, error.code, error.param) == (403, "model_not_allowed", "model")
        assert "may use: echo, fixed" in error.message


# --- the admin API and the gateway -----------------------------------------------------------


@pytest.fixture(scope="module")
def master_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MASTER_KEY_ENV, MASTER)
        yield


@pytest.fixture(scope="module")
def served(
    master_env: None, fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database = tmp_path_factory.mktemp("keys") / "gateway.db"
    with running_gateway(gateway_config(fake_upstream, database)) as gateway:
        yield gateway


@pytest.fixture
def admin(served: ServedApp) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {MASTER}"}
    with httpx.Client(base_url=served.url, headers=headers) as client:
        yield client


def _sdk(served: ServedApp, key: str) -> OpenAI:
    return OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0)


def _chat(sdk: OpenAI, model: str = "echo") -> Any:
    return sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}]
    )


def test_create_a_key_and_call_the_api_with_it(served: ServedApp, admin: httpx.Client) -> None:
    body = {**SETTINGS, "expires_at": "2099-01-01T00:00:00Z", "models": ["echo", "fixed"]}
    created = admin.post("/admin/keys", json=body)
    assert created.status_code == 200, created.text
    key = created.json()
    secret = key["key"]
    assert SECRET.match(secret)
    assert key["object"] == "virtual_key"
    assert key["status"] == "active"
    assert key["key_prefix"] == secret[:10] + "…"
    assert key["expires_at"] == "2099-01-01T00:00:00+00:00"
    for name, value in body.items():
        if name != "expires_at":
            assert key[name] == value, name
    assert "key_hash" not in key

    with _sdk(served, secret) as sdk:
        reply = _chat(sdk)
        assert reply.parse().choices[0].message.content
        assert {m.id for m in sdk.models.list().data} >= {"echo", "fixed"}
        log_id = reply.headers["x-crossroads-log-id"]
    flush_log(served)
    state = served.app.state.crossroads
    record = served.call(state.log_store.get(log_id))
    assert record is not None and record.key_id == key["id"]
    # The key reads only its own records.
    own = httpx.get(f"{served.url}/v1/logs", headers={"Authorization": f"Bearer {secret}"})
    assert own.status_code == 200
    assert {r["key_id"] for r in own.json()["data"]} == {key["id"]}
    # The secret, and its digest, are never shown again.
    digest = hash_secret(secret)
    for response in (admin.get(f"/admin/keys/{key['id']}"), admin.get("/admin/keys")):
        assert response.status_code == 200
        assert secret not in response.text and digest not in response.text
    shown = admin.get(f"/admin/keys/{key['id']}").json()
    assert shown == {k: v for k, v in key.items() if k != "key"}


def test_authentication_reads_the_database_once_per_ttl(
    served: ServedApp, admin: httpx.Client
) -> None:
    secret = admin.post("/admin/keys", json={"name": "hot"}).json()["key"]
    cache = served.app.state.crossroads.key_cache
    before = cache.queries
    with _sdk(served, secret) as sdk:
        for _ in range(10):
            _chat(sdk)
    assert cache.queries == before + 1


def test_a_revoked_key_is_refused_at_once_on_this_replica(
    served: ServedApp, admin: httpx.Client
) -> None:
    key = admin.post("/admin/keys", json={"name": "to revoke", "team": "gone"}).json()
    with _sdk(served, key["key"]) as sdk:
        _chat(sdk)  # cached now
        revoked = admin.delete(f"/admin/keys/{key['id']}")
        assert revoked.status_code == 200
        assert revoked.json()["status"] == "revoked"
        with pytest.raises(openai.AuthenticationError, match="was revoked") as caught:
            _chat(sdk)
    assert caught.value.code == "key_revoked"
    again = admin.delete(f"/admin/keys/{key['id']}")
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert admin.get("/admin/keys", params={"team": "gone"}).json()["data"] == []
    listed = admin.get("/admin/keys", params={"team": "gone", "include_revoked": "true"}).json()
    assert [k["id"] for k in listed["data"]] == [key["id"]]


def test_an_expired_key_is_refused(served: ServedApp, admin: httpx.Client) -> None:
    expires = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    key = admin.post("/admin/keys", json={"expires_at": expires}).json()
    with _sdk(served, key["key"]) as sdk:
        _chat(sdk)
        time.sleep(max(0.0, datetime.fromisoformat(expires).timestamp() - time.time()) + 0.05)
        with pytest.raises(openai.AuthenticationError, match="expired at") as caught:
            _chat(sdk)
    assert caught.value.code == "key_expired"
    assert admin.get(f"/admin/keys/{key['id']}").json()["status"] == "expired"


def test_an_update_reaches_this_replica_at_once(served: ServedApp, admin: httpx.Client) -> None:
    key = admin.post("/admin/keys", json={**SETTINGS, "expires_at": None}).json()
    state = served.app.state.crossroads
    header = f"Bearer {key['key']}"
    caller = served.call(state.keys.authenticate(header, "127.0.0.1"))
    assert caller.virtual_key.rpm_limit == 60
    patched = admin.patch(
        f"/admin/keys/{key['id']}", json={"rpm_limit": 5, "models": None, "name": "renamed"}
    )
    assert patched.status_code == 200, patched.text
    after = patched.json()
    assert (after["rpm_limit"], after["models"], after["name"]) == (5, None, "renamed")
    untouched = {"key", "rpm_limit", "models", "name", "updated_at"}
    assert {k: v for k, v in after.items() if k not in untouched} == {
        k: v for k, v in key.items() if k not in untouched
    }
    caller = served.call(state.keys.authenticate(header, "127.0.0.1"))
    assert (caller.virtual_key.rpm_limit, caller.name) == (5, "renamed")


BAD_BODIES: list[tuple[Any, str | None, str]] = [
    ({"max_budget": -1}, "max_budget", "invalid_value"),
    ({"max_budget": "10"}, "max_budget", "invalid_value"),
    ({"rpm_limit": -5}, "rpm_limit", "invalid_value"),
    ({"tpm_limit": 0}, "tpm_limit", "invalid_value"),
    ({"max_parallel_requests": -1}, "max_parallel_requests", "invalid_value"),
    ({"rpm_limit": "10"}, "rpm_limit", "invalid_value"),
    ({"rpm_limit": 1.5}, "rpm_limit", "invalid_value"),
    ({"rpm_limit": True}, "rpm_limit", "invalid_value"),
    ({"tpm_limit": 2**40}, "tpm_limit", "invalid_value"),
    ({"budget_period": "yearly"}, "budget_period", "invalid_value"),
    ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "invalid_value"),
    ({"expires_at": "next tuesday"}, "expires_at", "invalid_value"),
    ({"expires_at": 4102444800}, "expires_at", "invalid_value"),
    ({"models": []}, "models", "invalid_value"),
    ({"models": "echo"}, "models", "invalid_value"),
    ({"models": ["echo", ""]}, "models[1]", "invalid_value"),
    ({"models": [1]}, "models[0]", "invalid_value"),
    ({"metadata": "prod"}, "metadata", "invalid_value"),
    ({"name": 5}, "name", "invalid_value"),
    ({"name": ""}, "name", "invalid_value"),
    ({"rpm": 10}, "rpm", "unknown_parameter"),
    ({"key": "sk-cr-choose-my-own"}, "key", "unknown_parameter"),
    ({"id": "key_mine", "name": "x"}, "id", "unknown_parameter"),
    (b"{not json", None, "invalid_json"),
    (b"[1, 2]", None, "invalid_value"),
    (b'"a string"', None, "invalid_value"),
]


def _everything(admin: httpx.Client) -> Any:
    return admin.get("/admin/keys", params={"include_revoked": "true"}).json()


@pytest.mark.parametrize(("body", "param", "code"), BAD_BODIES)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(
    admin: httpx.Client, body: Any, param: str | None, code: str
) -> None:
    existing = admin.post("/admin/keys", json={"name": "victim", "rpm_limit": 9}).json()
    before = _everything(admin)
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    for method, url in (("POST", "/admin/keys"), ("PATCH", f"/admin/keys/{existing['id']}")):
        response = admin.request(method, url, content=content)
        assert response.status_code == 400, (method, response.text)
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, code), error
        assert error["type"] == "invalid_request_error"
        if param:
            assert f"'{param}'" in error["message"]
    assert _everything(admin) == before


def test_unknown_ids_and_bad_queries(admin: httpx.Client) -> None:
    before = _everything(admin)
    for method in ("GET", "PATCH", "DELETE"):
        response = admin.request(method, "/admin/keys/key_nope", json={"rpm_limit": 1})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "key_not_found"
    bad = admin.get("/admin/keys", params={"include_revoked": "maybe"})
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "include_revoked")
    assert admin.put("/admin/keys").status_code == 405
    assert admin.post("/admin/keys", content=b"x" * (65 * 1024)).status_code == 413
    assert _everything(admin) == before


def test_the_admin_api_needs_the_master_key(served: ServedApp) -> None:
    for headers, code in (
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer wrong-master-key"}, "invalid_api_key"),
        ({"Authorization": f"Bearer {API_KEY}"}, "invalid_api_key"),  # a config key is no admin
    ):
        response = httpx.post(f"{served.url}/admin/keys", json={}, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (401, code)
    with _sdk(served, MASTER) as sdk, pytest.raises(openai.AuthenticationError, match="admin"):
        _chat(sdk)  # nor is the master key an API key


def test_the_admin_api_says_how_to_enable_it(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    with running_gateway(gateway_config(fake_upstream, tmp_path / "db.sqlite")) as gateway:
        response = httpx.get(f"{gateway.url}/admin/keys", headers={"Authorization": "Bearer x"})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "admin_disabled"
    assert MASTER_KEY_ENV in error["message"]


def test_a_master_key_without_config_keys_is_not_loopback_only_mode(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, MASTER)
    config = gateway_config(fake_upstream, tmp_path / "db.sqlite", keys=False)
    with running_gateway(config) as gateway:
        anonymous = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert anonymous.status_code == 401
        created = httpx.post(
            f"{gateway.url}/admin/keys",
            json={"name": "only"},
            headers={"Authorization": f"Bearer {MASTER}"},
        )
        with _sdk(gateway, created.json()["key"]) as sdk:
            assert _chat(sdk).status_code == 200


# --- several replicas, one database ----------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL two gateways can share: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    async for probe in postgres_engine("test_keys_probe"):  # skips or fails when unreachable
        await probe.dispose()
    name = f"test_keys_{uuid.uuid4().hex}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def _on(config: Config, url: str) -> Config:
    storage = config.storage.model_copy(update={"database_url": url})
    return config.model_copy(update={"storage": storage})


def test_a_revoke_reaches_every_replica_within_the_cache_ttl(
    fake_upstream: FakeOpenAI,
    tmp_path: Path,
    shared_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, MASTER)
    config = _on(gateway_config(fake_upstream, tmp_path / "unused.db"), shared_database)
    with running_gateway(config) as a, running_gateway(config) as b:
        headers = {"Authorization": f"Bearer {MASTER}"}
        key = httpx.post(f"{a.url}/admin/keys", json={"name": "shared"}, headers=headers).json()
        with _sdk(a, key["key"]) as on_a, _sdk(b, key["key"]) as on_b:
            _chat(on_a)
            _chat(on_b)  # made on A, works on B at once (B had never seen it)
            revoked_at = time.monotonic()
            assert httpx.delete(f"{a.url}/admin/keys/{key['id']}", headers=headers).is_success
            with pytest.raises(openai.AuthenticationError):
                _chat(on_a)
            refused: openai.AuthenticationError | None = None
            while refused is None:
                assert time.monotonic() - revoked_at < KEY_CACHE_TTL + 1.0
                try:
                    _chat(on_b)
                except openai.AuthenticationError as exc:
                    refused = exc
                time.sleep(0.1)
            assert refused.code == "key_revoked"


# --- the command line ------------------------------------------------------------------------


def test_keys_commands_against_a_running_gateway(
    served: ServedApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, MASTER)
    monkeypatch.setenv("COLUMNS", "250")
    url = ["--url", served.url]
    created = runner.invoke(
        cli,
        [
            "keys",
            "create",
            "--name",
            "from-cli",
            "--team",
            "cli-team",
            "--models",
            "echo, fixed",
            "--max-budget",
            "2.5",
            "--budget-period",
            "daily",
            "--rpm-limit",
            "60",
            "--expires-at",
            "30d",
            "--metadata",
            '{"env": "test"}',
            "--json",
            *url,
        ],
    )
    assert created.exit_code == 0, created.output
    key = orjson.loads(created.stdout)
    assert SECRET.match(key["key"])
    assert (key["models"], key["max_budget"], key["metadata"]) == (
        ["echo", "fixed"],
        2.5,
        {"env": "test"},
    )
    expires = datetime.fromisoformat(key["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    with _sdk(served, key["key"]) as sdk:
        assert _chat(sdk).status_code == 200

    table = runner.invoke(cli, ["keys", "create", "--name", "shown", "--team", "cli-team", *url])
    assert table.exit_code == 0, table.output
    assert "shown only now" in table.output
    assert re.search(r"^sk-cr-[A-Za-z0-9_-]{32}$", table.stdout, re.MULTILINE)

    listed = runner.invoke(cli, ["keys", "list", "--team", "cli-team", *url])
    assert listed.exit_code == 0, listed.output
    assert key["id"] in listed.output and "from-cli" in listed.output and "shown" in listed.output
    assert key["key"] not in listed.output
    assert "2.5/daily" in listed.output

    updated = runner.invoke(
        cli,
        ["keys", "update", key["id"], "--rpm-limit", "10", "--unset", "models", "--json", *url],
    )
    assert updated.exit_code == 0, updated.output
    changed = orjson.loads(updated.stdout)
    assert (changed["rpm_limit"], changed["models"], changed["name"]) == (10, None, "from-cli")

    revoked = runner.invoke(cli, ["keys", "revoke", key["id"], *url])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in revoked.output
    remaining = runner.invoke(cli, ["keys", "list", "--team", "cli-team", "--json", *url])
    assert key["id"] not in remaining.stdout
    everything = runner.invoke(cli, ["keys", "list", "--team", "cli-team", "--all", "--json", *url])
    assert key["id"] in everything.stdout

    refused = runner.invoke(cli, ["keys", "create", "--rpm-limit", "-1", *url])
    assert refused.exit_code == 1
    assert "HTTP 400" in refused.output and "rpm_limit" in refused.output
    missing = runner.invoke(cli, ["keys", "revoke", "key_nope", *url])
    assert (missing.exit_code, "HTTP 404" in missing.output) == (1, True)
    nothing = runner.invoke(cli, ["keys", "update", key["id"], *url])
    assert nothing.exit_code == 2
    wrong = runner.invoke(cli, ["keys", "list", "--master-key", "wrong", *url])
    assert (wrong.exit_code, "HTTP 401" in wrong.output) == (1, True)
    unreachable = runner.invoke(cli, ["keys", "list", "--url", "http://127.0.0.1:9"])
    assert (unreachable.exit_code, "Cannot reach the gateway" in unreachable.output) == (1, True)
    monkeypatch.delenv(MASTER_KEY_ENV)
    no_key = runner.invoke(cli, ["keys", "list", *url])
    assert no_key.exit_code == 2
    assert MASTER_KEY_ENV in no_key.output
