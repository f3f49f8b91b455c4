"""The processes the gateway benchmark sends traffic through, one `Target` subclass each.

A target is a server in front of the mock upstream: `start()` installs it if it is a third-party
gateway not installed yet, writes whatever config it needs into its own temporary directory and
launches it pinned to CPU 0; `url` is where clients send `POST /v1/chat/completions`, `headers`
are extra request headers every client sends it (on top of auth and content type), and `pid`
is the process whose CPU time and peak RSS are charged to it (its children too). Adding a
gateway to the benchmark means one subclass here and one entry in `TARGETS`; the runner knows
nothing else about it.

Third-party gateways are pinned to exact versions and installed on first use into `TOOLS`
(`benchmarks/gateway/.tools/`, git-ignored), each in its own environment, never into the
project's virtualenv: LiteLLM into a virtualenv of its own, Portkey with npm. A stamp file
records what was installed, so later runs reuse it and a changed pin reinstalls.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

from crossroads.testing.server import free_port

__all__ = [
    "KEY",
    "MODEL",
    "TARGETS",
    "TOOLS",
    "Crossroads",
    "Direct",
    "LiteLLM",
    "Nginx",
    "Portkey",
    "Target",
]

KEY = "sk-bench-0123456789"
MODEL = "bench"
GATEWAY_CPU = 0
VENV_BIN = Path(sys.executable).parent
TOOLS = Path(__file__).parent / ".tools"


class Target:
    """One server under test. Subclasses set `name` and implement `command()`."""

    name = "target"
    ready_path = "/v1/models"
    ready_timeout = 60.0

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
    def headers(self) -> dict[str, str]:
        """Request headers this target needs on every request, besides auth and content type."""
        return {}

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def install(self) -> None:
        """Make the target's software available; a no-op for what ensure_tools provides."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The target's environment; None inherits this process's."""
        return None

    def start(self) -> None:
        self.install()
        log = (self.workdir / "output.log").open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", str(GATEWAY_CPU), *self.command()],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            cwd=self.workdir,
        )
        wait_ready(self.port, self.ready_path, self.process, self.ready_timeout)

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


class LiteLLM(Target):
    """The LiteLLM proxy, pinned, in its own virtualenv, configured as lean as it goes.

    One model entry, `openai/<MODEL>` at the mock; retries off in litellm_settings and the
    router, cooldowns off; no callbacks; no database (DATABASE_URL dropped from its
    environment), so no spend logs; the bundled model cost map instead of a download at start;
    logging at ERROR, which also silences uvicorn's access log. `master_key` is the benchmark
    key: without a database LiteLLM still checks it (any other bearer is refused), so auth is
    on, as for Crossroads. It runs as `litellm --num_workers 1`, which serves uvicorn on uvloop
    in the `litellm` process itself: that process (a Python interpreter) is the one charged.
    It imports for 15-20 s on one core before it answers.
    """

    name = "litellm"
    ready_path = "/health/liveliness"
    ready_timeout = 180.0
    requirement = "litellm[proxy]==1.106.2"
    venv = TOOLS / "litellm-venv"

    def install(self) -> None:
        stamp = self.venv / "installed.txt"
        if stamp.exists() and stamp.read_text() == self.requirement:
            return
        print(f"installing {self.requirement} into {self.venv} (benchmark-only, once)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(self.venv)], check=True)
        subprocess.run(
            [str(self.venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             self.requirement],
            check=True,
        )  # fmt: skip
        stamp.write_text(self.requirement)

    def environment(self) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
        environment.update(
            LITELLM_LOG="ERROR",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LITELLM_DONT_SHOW_FEEDBACK_BOX="True",
        )
        return environment

    def command(self) -> list[str]:
        config = self.workdir / "litellm.yaml"
        config.write_text(
            f"""
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: http://127.0.0.1:{self.upstream_port}/v1
      api_key: sk-mock
litellm_settings:
  num_retries: 0
  callbacks: []
  success_callback: []
  failure_callback: []
  set_verbose: false
  json_logs: false
router_settings:
  num_retries: 0
  disable_cooldowns: true
general_settings:
  master_key: {KEY}
"""
        )
        return [
            str(self.venv / "bin" / "litellm"), "--config", str(config),
            "--host", "127.0.0.1", "--port", str(self.port), "--num_workers", "1",
        ]  # fmt: skip


class Portkey(Target):
    """Portkey's open-source gateway (`@portkey-ai/gateway` from npm, pinned) on the machine's node.

    It has no configuration file and no client auth: each request names its provider and
    upstream in `x-portkey-provider` and `x-portkey-custom-host`, and the bearer token is
    passed through to the upstream as its API key. Retries are off by default (no retry config,
    `x-portkey-retry-attempt-count: 0` on responses). Run `--headless` with
    NODE_ENV=production: no web UI and no log stream (its per-request log middleware still runs,
    as it does for every user). One node process, the one charged. It listens on all interfaces
    (its start script takes no host), only while the benchmark runs.

    The published package ships no lockfile, and with the newest `@hono/node-server` that
    its semver range allows, every stream fails (500: it appends headers to the upstream's
    immutable ones). The install pins `@hono/node-server` and `hono` with npm `overrides` to
    the versions in Portkey's own package-lock.json for that release, with which it works.
    Install scripts are skipped: the only one, patch-package, needs patches the package
    does not ship.
    """

    name = "portkey"
    ready_path = "/"
    version = "1.15.2"
    overrides: ClassVar[dict[str, str]] = {"@hono/node-server": "1.13.5", "hono": "4.9.7"}
    prefix = TOOLS / "portkey"

    @property
    def headers(self) -> dict[str, str]:
        return {
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": f"http://127.0.0.1:{self.upstream_port}/v1",
        }

    def install(self) -> None:
        manifest = json.dumps(
            {
                "name": "crossroads-bench-portkey",
                "private": True,
                "dependencies": {"@portkey-ai/gateway": self.version},
                "overrides": self.overrides,
            },
            indent=2,
        )
        stamp = self.prefix / "installed.json"
        if stamp.exists() and stamp.read_text() == manifest:
            return
        if shutil.which("node") is None or shutil.which("npm") is None:
            print("installing nodejs npm: apt-get install -y nodejs npm")
            subprocess.run(["apt-get", "install", "-y", "nodejs", "npm"], check=True)
        print(f"installing @portkey-ai/gateway@{self.version} into {self.prefix} (once)")
        shutil.rmtree(self.prefix, ignore_errors=True)
        self.prefix.mkdir(parents=True)
        (self.prefix / "package.json").write_text(manifest + "\n")
        subprocess.run(
            ["npm", "install", "--prefix", str(self.prefix), "--no-audit", "--no-fund",
             "--ignore-scripts", "--loglevel=error"],
            check=True,
        )  # fmt: skip
        stamp.write_text(manifest)

    def environment(self) -> dict[str, str]:
        return {**os.environ, "NODE_ENV": "production"}

    def command(self) -> list[str]:
        server = self.prefix / "node_modules" / "@portkey-ai" / "gateway" / "build"
        return ["node", str(server / "start-server.js"), f"--port={self.port}", "--headless"]


TARGETS: list[type[Target]] = [Direct, Nginx, Crossroads, LiteLLM, Portkey]


def wait_ready(
    port: int, path: str, process: subprocess.Popen[bytes] | None, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process on port {port} exited with {process.returncode}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered on port {port}")
