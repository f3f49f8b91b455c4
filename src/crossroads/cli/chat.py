"""`crossroads chat`: one message to a running gateway, the answer printed as it comes."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from crossroads.cli.common import error, note
from crossroads.environ import API_KEY_ENV

__all__ = ["chat"]


def chat(
    prompt: Annotated[str, typer.Argument(help="What to ask.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name.")] = "local",
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = False,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            min=1, help="Longest answer in tokens (default: the model's; 256 on a local one)."
        ),
    ] = None,
    url: Annotated[str, typer.Option(help="Gateway base URL.")] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[
        str | None, typer.Option(envvar=API_KEY_ENV, help="Bearer key for the gateway.")
    ] = None,
) -> None:
    """Send one chat message to a running gateway and print the answer.

    Exit status: 0 answered, 1 the gateway refused or could not be reached.
    """
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream_options"] = {"include_usage": True}
    raise typer.Exit(_chat(url.rstrip("/"), api_key, body))


def _chat(url: str, api_key: str | None, body: dict[str, Any]) -> int:
    import orjson

    from crossroads.cli.http import GatewayUnreachable, error_message, request

    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        with request(
            "POST", f"{url}/chat/completions", data=orjson.dumps(body), headers=headers
        ) as resp:
            if resp.status >= 400:
                error(f"HTTP {resp.status}: {error_message(resp.read())}")
                return 1
            if not body["stream"]:
                result = orjson.loads(resp.read())
                print(result["choices"][0]["message"].get("content") or "")
                _print_usage(result.get("usage"), result.get("provider"))
                return 0
            usage = provider = None
            for line in resp.lines():
                if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                    continue
                chunk = orjson.loads(line[6:])
                if "error" in chunk:
                    sys.stdout.write("\n")
                    error(f"stream failed: {chunk['error'].get('message')}")
                    return 1
                for choice in chunk.get("choices") or ():
                    sys.stdout.write((choice.get("delta") or {}).get("content") or "")
                    sys.stdout.flush()
                usage, provider = chunk.get("usage") or usage, chunk.get("provider") or provider
            sys.stdout.write("\n")
            _print_usage(usage, provider)
            return 0
    except (GatewayUnreachable, OSError) as exc:
        error(f"Cannot reach the gateway at {url}: {exc}")
        return 1


def _print_usage(usage: dict[str, Any] | None, provider: str | None) -> None:
    if usage:
        note(
            f"{provider or '?'} · "
            f"{usage.get('prompt_tokens')}+{usage.get('completion_tokens')} tokens · "
            f"${usage.get('cost', 0):.6f} · {usage.get('latency_ms', 0):.0f} ms",
            dim=True,
        )
