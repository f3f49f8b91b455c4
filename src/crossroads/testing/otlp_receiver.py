"""A loopback OTLP/HTTP receiver: a real server on 127.0.0.1 that decodes what it is sent.

Tests point `[telemetry] endpoint` at it and read back the spans and metrics the gateway
exported, as the protobuf messages a collector would receive (`/v1/traces`,
`/v1/metrics`). Needs the `otel` extra (its protobuf classes).
"""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = ["OtlpReceiver"]


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[Any] = []  # opentelemetry.proto.trace.v1.Span
        self.metrics: list[Any] = []  # opentelemetry.proto.metrics.v1.Metric
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _take(self, path: str, body: bytes) -> bool:
        with self._lock:
            self.requests += 1
            if path == "/v1/traces":
                traces = ExportTraceServiceRequest.FromString(body)
                for resource in traces.resource_spans:
                    for scope in resource.scope_spans:
                        self.spans.extend(scope.spans)
                return True
            if path == "/v1/metrics":
                metrics = ExportMetricsServiceRequest.FromString(body)
                for resource in metrics.resource_metrics:
                    for scope in resource.scope_metrics:
                        self.metrics.extend(scope.metrics)
                return True
        return False

    def wait_for(self, found: Callable[[OtlpReceiver], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not found(self):
            if time.monotonic() > deadline:
                raise TimeoutError("the receiver did not get what was expected in time")
            time.sleep(0.05)

    @contextlib.contextmanager
    def running(self) -> Iterator[OtlpReceiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                ok = receiver._take(self.path, body)
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

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
