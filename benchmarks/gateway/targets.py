"""The processes the gateway benchmark sends traffic through, one `Target` subclass each.

A target is a server in front of the mock upstream: `start()` writes whatever config it needs
into its own temporary directory and launches it pinned to CPU 0, `url` is where clients send
`POST /v1/chat/completions`, and `pid` is the process whose CPU time and peak RSS are charged
to it (its children too). Adding a gateway to the benchmark means one subclass here and one
entry in `TARGETS`; the runner knows nothing else about it.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path

from crossroads.testing.server import free_port

__all__ = ["KEY", "MODEL", "TARGETS", "Crossroads", "Direct", "Nginx", "Target"]

KEY = "sk-bench-0123456789"
MODEL = "bench"
GATEWAY_CPU = 0
VENV_BIN = Path(sys.executable).parent


class Target:
    """One server under test. Subclasses set `name` and implement `command()`."""

    name = "target"
    ready_path = "/v1/models"

    def __init__(self, workdir: Path, upstream_port: int, upstream_pid: int) -> None:
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.upstream_port = upstream_port
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        log = (self.workdir / "output.log").open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", str(GATEWAY_CPU), *self.command()],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_ready(self.port, self.ready_path, self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class Direct(Target):
    """No gateway: the client calls the mock itself. Its CPU and RSS are the mock's."""

    name = "direct"

    def __init__(self, workdir: Path, upstream_port: int, upstream_pid: int) -> None:
        super().__init__(workdir, upstream_port, upstream_pid)
        self.port = upstream_port
        self.upstream_pid = upstream_pid

    @property
    def pid(self) -> int:
        return self.upstream_pid

    def start(self) -> None:
        wait_ready(self.port, self.ready_path, None)

    def stop(self) -> None:
        pass


class Nginx(Target):
    """A plain keep-alive reverse proxy: the least any proxy on this machine can cost."""

    name = "nginx"

    def command(self) -> list[str]:
        config = self.workdir / "nginx.conf"
        # One process (no master) so that its pid carries all of the proxy's CPU time.
        config.write_text(
            f"""
daemon off;
master_process off;
worker_processes 1;
pid {self.workdir / "nginx.pid"};
error_log {self.workdir / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.workdir};
    proxy_temp_path {self.workdir};
    upstream mock {{ server 127.0.0.1:{self.upstream_port}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
        )
        return ["nginx", "-p", str(self.workdir), "-c", str(config)]


class Crossroads(Target):
    """Crossroads as users run it: auth on, SQLite request log on, priced model, one worker."""

    name = "crossroads"
    ready_path = "/ready"

    def command(self) -> list[str]:
        config = self.workdir / "crossroads.toml"
        config.write_text(
            f"""
[server]
port = {self.port}
[storage]
database_url = "sqlite+aiosqlite:///{self.workdir / "log.db"}"
[[keys]]
name = "bench"
key = "{KEY}"
[providers.mock]
base_url = "http://127.0.0.1:{self.upstream_port}/v1"
[models.{MODEL}]
deployments = [{{ provider = "mock", model = "mock", price = {{ input = 1.0, output = 2.0 }} }}]
"""
        )
        return [str(VENV_BIN / "crossroads"), "serve", "--config", str(config)]


# Later targets (see run.py's docstring): LiteLLM proxy, Portkey gateway.
TARGETS: list[type[Target]] = [Direct, Nginx, Crossroads]


def wait_ready(
    port: int, path: str, process: subprocess.Popen[bytes] | None, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered on port {port}")
