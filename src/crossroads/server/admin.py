"""The admin API: create, list, read, update and revoke virtual keys with the master key.

Handlers are thin like the API's: check the master key, validate the body with pydantic
(strictly: unknown fields, wrong types and out-of-range values are a 400 naming the field,
before anything is written), make one `KeyStore` call, answer. The secret is in the answer
to `POST /admin/keys` and nowhere else; records show `key_prefix` instead, never the
digest. Changes made here are dropped from this replica's `KeyCache` at once; other
replicas see them within its TTL.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from sqlalchemy import exc as sa_exc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from crossroads.guardrails.config import GuardrailSet
from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.protocol.json_body import decode_json_body
from crossroads.protocol.validation import validate_body
from crossroads.quality_config import QualityLayer
from crossroads.server.responses import JSONResponse, error_response
from crossroads.server.state import AppState
from crossroads.stages.quality_layers import VIRTUAL_KEY_FIELD, check_stored_layer
from crossroads.storage.key_store import BudgetPeriod, VirtualKey

__all__ = ["KeySettings", "key_json", "key_routes"]

_log = logging.getLogger("crossroads.admin")

_MAX_BODY = 64 * 1024
_INT_MAX = 2**31 - 1  # the columns are 32-bit on PostgreSQL
# A later expiry is a mistake (milliseconds for seconds, a "never" sentinel): null is never.
_MAX_EXPIRY_YEARS = 100


def _iso8601(value: Any) -> Any:
    """ISO 8601 text only (not Unix seconds); a time without an offset is UTC."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time such as '2030-01-31T00:00:00Z'")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 time such as '2030-01-31T00:00:00Z'"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if moment <= now:
        raise ValueError(f"{value!r} is in the past; a key's expiry must be in the future")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # after the year 9999 once in UTC
        moment = datetime.max.replace(tzinfo=UTC)
    if moment.year - now.year > _MAX_EXPIRY_YEARS:
        raise ValueError(
            f"{value!r} is more than {_MAX_EXPIRY_YEARS} years away; "
            "leave expires_at null for a key that never expires"
        )
    return moment


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _no_nul(value: Any) -> Any:
    """Refuse NUL characters, which PostgreSQL cannot store (in text, or usably in JSON).
    Bodies nest at most 64 levels (`decode_json_body`), so the walk's recursion is bounded."""
    if _has_nul(value):
        raise ValueError("must not contain NUL characters")
    return value


_Text = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
_Limit = Annotated[int, Field(ge=1, le=_INT_MAX)]


class KeySettings(BaseModel):
    """What `POST` and `PATCH /admin/keys…` accept; every field is optional.

    In a PATCH only the fields present change, and null clears one (no limit, all models).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    name: _Text | None = None
    team: _Text | None = None
    # Public model names the key may use; null (the default) means every model.
    models: Annotated[list[_Text], Field(max_length=1000)] | None = None
    max_budget: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None  # USD
    budget_period: BudgetPeriod | None = None  # the budget resets each period; null: never
    rpm_limit: _Limit | None = None
    tpm_limit: _Limit | None = None
    max_parallel_requests: _Limit | None = None
    expires_at: Annotated[datetime, BeforeValidator(_iso8601)] | None = None
    metadata: Annotated[dict[str, Any], AfterValidator(_no_nul)] | None = None
    # Checks every request made with the key runs (README "Guardrails"); null: none.
    guardrails: GuardrailSet | None = None

    def stored(self, *, only_set: bool = False) -> dict[str, Any]:
        """The settings as the key store takes them (guardrails as plain JSON)."""
        values = self.model_dump(exclude_unset=only_set)
        if self.guardrails is not None:
            values["guardrails"] = self.guardrails.model_dump(mode="json")
        return values

    @field_validator("metadata")
    @classmethod
    def _answer_quality(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        # `metadata.answer_quality`: the key's quality settings (stages/quality_layers.py).
        if metadata and VIRTUAL_KEY_FIELD in metadata:
            try:
                QualityLayer.model_validate(metadata[VIRTUAL_KEY_FIELD])
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in (VIRTUAL_KEY_FIELD, *first["loc"]))
                raise ValueError(f"{where}: {first['msg']}") from None
        return metadata

    @field_validator("models")
    @classmethod
    def _some_models(cls, models: list[str] | None) -> list[str] | None:
        if models == []:
            raise ValueError("must name at least one model; null means every model")
        return models


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def key_json(record: VirtualKey) -> dict[str, Any]:
    """A key as the admin API shows it: every setting, never the secret or its digest."""
    return {
        "object": "virtual_key",
        "id": record.id,
        "name": record.name,
        "team": record.team,
        "models": None if record.models is None else list(record.models),
        "max_budget": record.max_budget,
        "budget_period": record.budget_period,
        "rpm_limit": record.rpm_limit,
        "tpm_limit": record.tpm_limit,
        "max_parallel_requests": record.max_parallel_requests,
        "expires_at": _iso(record.expires_at),
        "metadata": record.metadata,
        "guardrails": record.guardrails,
        "key_prefix": record.key_prefix,
        "status": record.status(),
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "revoked_at": _iso(record.revoked_at),
    }


async def _settings(request: Request, state: AppState) -> KeySettings:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise GatewayError(
            413, f"Admin request bodies are limited to {_MAX_BODY} bytes.", code="request_too_large"
        )
    body = decode_json_body(raw, empty={})
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_value")
    settings = validate_body(KeySettings, body, "A key")
    check_stored_layer(settings.metadata, state.config)
    return settings


def _not_found(key_id: str) -> GatewayError:
    return GatewayError(
        404, f"No virtual key with id '{key_id}'.", param="id", code="key_not_found"
    )


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in {"true", "false", "1", "0"}:
        raise bad_request(f"'{name}' must be true or false, got {value!r}.", param=name)
    return value in {"true", "1"}


Handler = Callable[[Request, AppState], Awaitable[Response]]


def _admin(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Check the master key, run `handler`, and turn its failures into the envelope."""

    async def endpoint(request: Request) -> Response:
        state: AppState = request.app.state.crossroads
        try:
            state.keys.authenticate_admin(request.headers.get("authorization"))
            return await handler(request, state)
        except GatewayError as exc:
            return error_response(exc)
        except (sa_exc.SQLAlchemyError, OSError):
            _log.exception("admin API: %s %s failed in storage", request.method, request.url.path)
            return error_response(
                GatewayError(
                    503,
                    "The key store is unavailable; nothing was changed. Retry shortly.",
                    code="key_store_unavailable",
                )
            )

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def create_key(request: Request, state: AppState) -> Response:
    """Make a key; the answer holds its secret in `key`, which is never shown again."""
    settings = await _settings(request, state)
    record, secret = await state.key_store.create(**settings.stored())
    return JSONResponse({**key_json(record), "key": secret})


async def list_keys(request: Request, state: AppState) -> Response:
    """Keys oldest first; `team` filters, `include_revoked=true` adds revoked ones."""
    records = await state.key_store.list(
        team=request.query_params.get("team") or None,
        include_revoked=_flag(request, "include_revoked"),
    )
    return JSONResponse({"object": "list", "data": [key_json(r) for r in records]})


async def get_key(request: Request, state: AppState) -> Response:
    key_id = request.path_params["key_id"]
    record = await state.key_store.get(key_id)
    if record is None:
        raise _not_found(key_id)
    return JSONResponse(key_json(record))


async def update_key(request: Request, state: AppState) -> Response:
    """Change the fields sent; null clears a field."""
    key_id = request.path_params["key_id"]
    settings = await _settings(request, state)
    record = await state.key_store.update(key_id, settings.stored(only_set=True))
    if record is None:
        raise _not_found(key_id)
    state.key_cache.forget(record.key_hash)
    return JSONResponse(key_json(record))


async def revoke_key(request: Request, state: AppState) -> Response:
    """Revoke for good (idempotent); the record stays, for the log and usage history."""
    key_id = request.path_params["key_id"]
    record = await state.key_store.revoke(key_id)
    if record is None:
        raise _not_found(key_id)
    state.key_cache.forget(record.key_hash)
    return JSONResponse(key_json(record))


def key_routes() -> list[Route]:
    """The admin API's routes, for the app's route table."""
    return [
        Route("/admin/keys", _admin(create_key), methods=["POST"]),
        Route("/admin/keys", _admin(list_keys), methods=["GET"]),
        Route("/admin/keys/{key_id}", _admin(get_key), methods=["GET"]),
        Route("/admin/keys/{key_id}", _admin(update_key), methods=["PATCH"]),
        Route("/admin/keys/{key_id}", _admin(revoke_key), methods=["DELETE"]),
    ]
