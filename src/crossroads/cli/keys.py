"""`crossroads keys …`: virtual keys, through a running gateway's admin API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from crossroads.cli.common import JsonOption, cell, fail, print_json, print_table, warning
from crossroads.environ import MASTER_KEY_ENV

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help=f"Virtual keys, through a running gateway's admin API (needs ${MASTER_KEY_ENV}).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

UrlOption = Annotated[str, typer.Option(help="Gateway base URL (the admin API is under /admin).")]
MasterKeyOption = Annotated[
    str | None,
    typer.Option(envvar=MASTER_KEY_ENV, help="The gateway's master key.", show_default=False),
]
NameOption = Annotated[str | None, typer.Option(help="A name to tell the key by.")]
TeamOption = Annotated[str | None, typer.Option(help="The team or owner it belongs to.")]
ModelsOption = Annotated[
    str | None, typer.Option(help="Comma-separated models it may use (default: all).")
]
BudgetOption = Annotated[float | None, typer.Option(help="Budget in USD.")]
PeriodOption = Annotated[
    str | None, typer.Option(help="Budget reset period: daily, weekly or monthly.")
]
RpmOption = Annotated[int | None, typer.Option(help="Requests per minute.")]
TpmOption = Annotated[int | None, typer.Option(help="Tokens per minute.")]
ParallelOption = Annotated[int | None, typer.Option(help="Requests in flight at once.")]
ExpiresOption = Annotated[
    str | None,
    typer.Option(help="Expiry: an ISO 8601 time, or a duration from now such as 30d, 12h, 2w."),
]
MetadataOption = Annotated[
    str | None, typer.Option(help='A JSON object, e.g. \'{"env": "prod"}\'.')
]

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _expiry(text: str) -> str:
    """ISO 8601 for the server; a duration (`30d`) counts from now."""
    if match := _DURATION.match(text.strip()):
        delta = timedelta(**{_DURATION_UNITS[match[2]]: int(match[1])})
        return (datetime.now(UTC) + delta).isoformat()
    return text


def _key_settings(
    name: str | None,
    team: str | None,
    models: str | None,
    max_budget: float | None,
    budget_period: str | None,
    rpm_limit: int | None,
    tpm_limit: int | None,
    max_parallel_requests: int | None,
    expires_at: str | None,
    metadata: str | None,
) -> dict[str, Any]:
    """The options given, as admin API fields; the gateway validates their values."""
    settings: dict[str, Any] = {
        "name": name,
        "team": team,
        "models": None if models is None else [m.strip() for m in models.split(",")],
        "max_budget": max_budget,
        "budget_period": budget_period,
        "rpm_limit": rpm_limit,
        "tpm_limit": tpm_limit,
        "max_parallel_requests": max_parallel_requests,
        "expires_at": None if expires_at is None else _expiry(expires_at),
    }
    if metadata is not None:
        import orjson

        try:
            settings["metadata"] = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            raise fail(f"--metadata is not JSON: {exc}") from None
    return {field: value for field, value in settings.items() if value is not None}


def _admin_call(
    url: str,
    master_key: str | None,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """Call the admin API; print its error and exit 1 when it refuses."""
    import urllib.parse

    import orjson

    from crossroads.cli.http import GatewayUnreachable, error_message, request

    if not master_key:
        raise fail(f"No master key: set {MASTER_KEY_ENV} or pass --master-key.")
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    try:
        with request(
            method,
            f"{url.rstrip('/')}{path}{query}",
            data=None if body is None else orjson.dumps(body),
            headers={"Authorization": f"Bearer {master_key}", "Content-Type": "application/json"},
        ) as resp:
            status, payload = resp.status, resp.read()
    except (GatewayUnreachable, OSError) as exc:
        raise fail(f"Cannot reach the gateway at {url}: {exc}", 1) from None
    if status >= 400:
        raise fail(f"HTTP {status}: {error_message(payload)}", 1)
    return orjson.loads(payload)


def _print_keys(keys: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(pad_edge=False)
    for column in ("id", "name", "team", "status", "models", "budget $", "rpm", "tpm"):
        table.add_column(column, no_wrap=column != "models")
    for column in ("parallel", "expires", "key"):
        table.add_column(column, no_wrap=True)
    for k in keys:
        budget = "" if k["max_budget"] is None else f"{k['max_budget']:g}"
        if budget and k["budget_period"]:
            budget += f"/{k['budget_period']}"
        table.add_row(
            *(
                cell(value)
                for value in (
                    k["id"],
                    k["name"] or "",
                    k["team"] or "",
                    k["status"],
                    "all" if k["models"] is None else ", ".join(k["models"]),
                    budget,
                    *("" if k[f] is None else str(k[f]) for f in ("rpm_limit", "tpm_limit")),
                    "" if k["max_parallel_requests"] is None else str(k["max_parallel_requests"]),
                    (k["expires_at"] or "")[:19],
                    k["key_prefix"],
                )
            ),
            style="dim" if k["status"] != "active" else None,
        )
    print_table(table)


@keys_app.command("create")
def keys_create(
    name: NameOption = None,
    team: TeamOption = None,
    models: ModelsOption = None,
    max_budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    rpm_limit: RpmOption = None,
    tpm_limit: TpmOption = None,
    max_parallel_requests: ParallelOption = None,
    expires_at: ExpiresOption = None,
    metadata: MetadataOption = None,
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a virtual key and print its secret — the only time it is shown."""
    settings = _key_settings(
        name,
        team,
        models,
        max_budget,
        budget_period,
        rpm_limit,
        tpm_limit,
        max_parallel_requests,
        expires_at,
        metadata,
    )
    created = _admin_call(url, master_key, "POST", "/admin/keys", body=settings)
    if as_json:
        print_json(created)
        return
    _print_keys([created])
    print(created["key"])
    warning("The key above is shown only now: store it somewhere safe.")


@keys_app.command("list")
def keys_list(
    team: Annotated[str | None, typer.Option(help="Only this team's keys.")] = None,
    include_revoked: Annotated[
        bool, typer.Option("--all", "-a", help="Include revoked keys.")
    ] = False,
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List virtual keys, oldest first (their secrets are never shown again)."""
    params = {"include_revoked": "true" if include_revoked else "false"}
    if team is not None:
        params["team"] = team
    listing = _admin_call(url, master_key, "GET", "/admin/keys", params=params)
    if as_json:
        print_json(listing["data"])
    else:
        _print_keys(listing["data"])


@keys_app.command("update")
def keys_update(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    name: NameOption = None,
    team: TeamOption = None,
    models: ModelsOption = None,
    max_budget: BudgetOption = None,
    budget_period: PeriodOption = None,
    rpm_limit: RpmOption = None,
    tpm_limit: TpmOption = None,
    max_parallel_requests: ParallelOption = None,
    expires_at: ExpiresOption = None,
    metadata: MetadataOption = None,
    unset: Annotated[
        list[str] | None,
        typer.Option(help="Clear a field (no limit, all models, no expiry); repeatable."),
    ] = None,
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change some of a key's settings; the others stay as they are."""
    changes = _key_settings(
        name,
        team,
        models,
        max_budget,
        budget_period,
        rpm_limit,
        tpm_limit,
        max_parallel_requests,
        expires_at,
        metadata,
    )
    changes |= {field.strip(): None for field in unset or ()}
    if not changes:
        raise fail("Nothing to update: give at least one option.")
    updated = _admin_call(url, master_key, "PATCH", f"/admin/keys/{key_id}", body=changes)
    if as_json:
        print_json(updated)
    else:
        _print_keys([updated])


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    url: UrlOption = "http://127.0.0.1:8000",
    master_key: MasterKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key for good. Every replica refuses it within a few seconds, this one at once."""
    revoked = _admin_call(url, master_key, "DELETE", f"/admin/keys/{key_id}")
    if as_json:
        print_json(revoked)
    else:
        _print_keys([revoked])
