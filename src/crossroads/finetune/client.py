"""The upstream's fine-tuning API: upload a JSONL file, create a job, read its status.

OpenAI's paths under the provider's `base_url` (which ends in `/v1` for OpenAI-compatible
providers, as for chat): `POST /files` (multipart, `purpose=fine-tune`), `POST
/fine_tuning/jobs`, `GET /fine_tuning/jobs/{id}`. The upload is streamed from the file in
pieces, never read whole. Standard library only: these are a handful of calls per job.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["TERMINAL", "FineTuneError", "FineTuningApi"]

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_PIECE = 256 * 1024
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FineTuneError(Exception):
    """The upstream refused a call; the message is its own."""


class _Multipart:
    """A multipart body: a few form fields, then one file streamed from disk."""

    def __init__(self, fields: dict[str, str], file: Path, filename: str) -> None:
        self.boundary = "crossroads-" + secrets.token_hex(12)
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in fields.items()
        )
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/jsonl\r\n\r\n'
        ).encode()
        self.head = head
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.file = file
        self.length = len(head) + file.stat().st_size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with self.file.open("rb") as source:
            while piece := source.read(_PIECE):
                yield piece
        yield self.tail


class FineTuningApi:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = 120) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def _call(
        self, method: str, path: str, data: Any = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        all_headers = dict(headers or {})
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.base_url}{path}", data=data, headers=all_headers, method=method
        )
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = orjson.loads(response.read())
                return answer
        except urllib.error.HTTPError as error:
            with error:
                body = error.read()
            try:
                message = orjson.loads(body)["error"]["message"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = body.decode(errors="replace")[:500]
            raise FineTuneError(f"HTTP {error.code} from {path}: {message}") from None
        except (urllib.error.URLError, OSError) as error:
            raise FineTuneError(f"cannot reach {self.base_url}: {error}") from None

    def upload(self, file: Path, filename: str | None = None) -> dict[str, Any]:
        body = _Multipart({"purpose": "fine-tune"}, file, filename or file.name)
        return self._call(
            "POST",
            "/files",
            data=iter(body),
            headers={
                "Content-Type": f"multipart/form-data; boundary={body.boundary}",
                "Content-Length": str(body.length),
            },
        )

    def create_job(
        self, model: str, training_file: str, *, method: str = "supervised", suffix: str | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": model,
            "training_file": training_file,
            "method": {"type": method},
        }
        if suffix:
            payload["suffix"] = suffix
        return self._call(
            "POST",
            "/fine_tuning/jobs",
            data=orjson.dumps(payload),
            headers={"Content-Type": "application/json"},
        )

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/fine_tuning/jobs/{job_id}")
