"""A fake fine-tuning upstream: OpenAI's `/v1/files` and `/v1/fine_tuning/jobs` on 127.0.0.1.

A real HTTP server (standard library, its own thread). Uploads are parsed as multipart and
every JSONL line is checked against the format its job's method needs (datasets/formats.py:
chat SFT for `supervised`, preference pairs for `dpo`), as OpenAI's file validation would.
A job moves one step per status read — `validating_files`, `queued`, `running`, then
`succeeded` with a `fine_tuned_model` of `ft:{base}:crossroads:{suffix}:{id}` — or ends
`failed` when the fake was made with `fail_jobs=True`. A succeeded job's model answers
`/v1/chat/completions` (non-streamed) with a reply naming it, as a provider serves the models
it trained; each such request's body is kept in `chats`, and any other model gets a 404.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from crossroads.datasets.formats import check_openai_chat, check_openai_dpo

__all__ = ["FakeFineTuning"]

_STEPS = ("validating_files", "queued", "running")


class FakeFineTuning:
    def __init__(self, api_key: str = "sk-ft", *, fail_jobs: bool = False) -> None:
        self.api_key = api_key
        self.fail_jobs = fail_jobs
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.chats: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    # --- the API -----------------------------------------------------------------------------

    def _upload(self, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = part.get_payload(decode=True)
        if fields.get("purpose") != b"fine-tune":
            return 400, _error("purpose must be 'fine-tune'", "purpose")
        data = fields.get("file")
        if not isinstance(data, bytes) or not data.strip():
            return 400, _error("file is missing or empty", "file")
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                return 400, _error(f"line {number} is not JSON", "file")
        file_id = "file-" + secrets.token_hex(8)
        self.files[file_id] = data
        return 200, {
            "id": file_id,
            "object": "file",
            "purpose": "fine-tune",
            "bytes": len(data),
            "created_at": int(time.time()),
        }

    def _create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file_id = body.get("training_file")
        if file_id not in self.files:
            return 400, _error(f"no file {file_id!r}", "training_file")
        method = (body.get("method") or {}).get("type", "supervised")
        check = {"supervised": check_openai_chat, "dpo": check_openai_dpo}.get(method)
        if check is None:
            return 400, _error(f"method.type {method!r} is not supported", "method")
        for number, line in enumerate(self.files[file_id].splitlines(), start=1):
            problems = check(orjson.loads(line))
            if problems:
                return 400, _error(f"line {number} is invalid for {method}: {problems[0]}", "file")
        job_id = "ftjob-" + secrets.token_hex(8)
        job = {
            "id": job_id,
            "object": "fine_tuning.job",
            "model": body.get("model"),
            "training_file": file_id,
            "method": {"type": method},
            "suffix": body.get("suffix"),
            "status": _STEPS[0],
            "fine_tuned_model": None,
            "created_at": int(time.time()),
            "error": None,
        }
        self.jobs[job_id] = job
        return 200, job

    def _read(self, job_id: str) -> tuple[int, dict[str, Any]]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, _error(f"no fine-tuning job {job_id!r}", None)
        if job["status"] in _STEPS:
            step = _STEPS.index(job["status"]) + 1
            if step < len(_STEPS):
                job["status"] = _STEPS[step]
            elif self.fail_jobs:
                job["status"] = "failed"
                job["error"] = {"code": "invalid_training_data", "message": "fake failure"}
            else:
                job["status"] = "succeeded"
                job["fine_tuned_model"] = (
                    f"ft:{job['model']}:crossroads:{job['suffix'] or ''}:{job_id[-8:]}"
                )
        return 200, dict(job)

    def _chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = body.get("model")
        trained = {j.get("fine_tuned_model") for j in self.jobs.values()}
        if not model or model not in trained:
            return 404, _error(f"the model {model!r} does not exist", "model")
        self.chats.append(body)
        return 200, {
            "id": f"chatcmpl-{secrets.token_hex(6)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"Answered by {model}."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    # --- serving -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[FakeFineTuning]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = orjson.dumps(payload)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("authorization") != f"Bearer {fake.api_key}":
                    self._answer(401, _error("invalid api key", None))
                    return False
                return True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if not self._authorised():
                    return
                with fake._lock:
                    if self.path == "/v1/files":
                        self._answer(*fake._upload(self.headers["content-type"], body))
                    elif self.path == "/v1/fine_tuning/jobs":
                        self._answer(*fake._create(orjson.loads(body)))
                    elif self.path == "/v1/chat/completions":
                        self._answer(*fake._chat(orjson.loads(body)))
                    else:
                        self._answer(404, _error(f"unknown path {self.path}", None))

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                prefix = "/v1/fine_tuning/jobs/"
                with fake._lock:
                    if self.path.startswith(prefix):
                        self._answer(*fake._read(self.path.removeprefix(prefix)))
                    else:
                        self._answer(404, _error(f"unknown path {self.path}", None))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(5)


def _error(message: str, param: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param}}
