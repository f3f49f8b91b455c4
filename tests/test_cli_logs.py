"""`crossroads logs` piped into another program, as scripts and `grep` use it: tab-separated
lines with whole ids that `GET /v1/logs/{id}` takes, and `--follow` writing each record as
it arrives (not when a buffer fills or the command ends)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from crossroads.cli.logs import TSV_COLUMNS
from crossroads.testing.fake_openai import FakeOpenAI
from tests.conftest import API_KEY, flush_log, gateway_config, interruptible, running_gateway

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _config(path: Path, database: Path) -> Path:
    path.write_text(f'[storage]\ndatabase_url = "sqlite+aiosqlite:///{database}"\n')
    return path


def _logs(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "CROSSROADS_CONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", "crossroads", "logs", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=interruptible,
    )


def _ask(url: str, model: str, content: str) -> str:
    """One chat request; the id of its log record, from the response header."""
    response = httpx.post(
        f"{url}/v1/chat/completions",
        headers=AUTH,
        json={"model": model, "messages": [{"role": "user", "content": content}]},
    )
    return response.headers["x-crossroads-log-id"]


def test_piped_logs_are_tsv_with_ids_the_api_takes(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    database = tmp_path / "log.db"
    config = _config(tmp_path / "c.toml", database)
    with running_gateway(gateway_config(fake_upstream, database)) as served:
        # Back to back, so their ids share the leading timestamp digits.
        sent = [_ask(served.url, "echo", f"number {i}") for i in range(5)]
        sent.append(_ask(served.url, "no-such-model", "missing"))
        flush_log(served)
        process = _logs(config, "--limit", "10")
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        header, *rows = (line.split("\t") for line in out.splitlines())
        assert tuple(header) == TSV_COLUMNS
        assert all(len(row) == len(TSV_COLUMNS) for row in rows)
        ids = [row[TSV_COLUMNS.index("id")] for row in rows]
        assert ids == sent  # whole, unique, oldest first
        assert len({i[:8] for i in ids}) < len(ids)  # an 8-character prefix would not do
        for log_id, row in zip(ids, rows, strict=True):
            record = httpx.get(f"{served.url}/v1/logs/{log_id}", headers=AUTH)
            assert record.status_code == 200, record.text
            assert record.json()["id"] == log_id
            assert row[TSV_COLUMNS.index("status")] == str(record.json()["status_code"])
        assert rows[-1][TSV_COLUMNS.index("status")] == "404"


def test_follow_into_a_pipe_writes_each_record_as_it_arrives(
    fake_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    database = tmp_path / "log.db"
    config = _config(tmp_path / "c.toml", database)
    with running_gateway(gateway_config(fake_upstream, database)) as served:
        first = _ask(served.url, "echo", "before")
        flush_log(served)
        follower = _logs(config, "--follow")
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        def next_line() -> list[str]:
            # Generous: the child starts a Python process and polls once a second.
            return lines.get(timeout=30).rstrip("\n").split("\t")

        try:
            assert tuple(next_line()) == TSV_COLUMNS
            assert next_line()[1] == first
            for content in ("after one", "after two"):
                log_id = _ask(served.url, "echo", content)
                flush_log(served)
                started = time.monotonic()
                row = next_line()  # arrives while the command is still running
                assert row[1] == log_id
                assert time.monotonic() - started < 30
            assert follower.poll() is None
        finally:
            follower.send_signal(signal.SIGINT)
            try:
                follower.wait(timeout=15)
            finally:
                if follower.poll() is None:  # it must stop on Ctrl-C; never leave it behind
                    follower.kill()
                    follower.wait()
            reader.join(timeout=5)
            for pipe in (follower.stdout, follower.stderr):
                if pipe is not None:
                    pipe.close()
        assert follower.returncode == 0
