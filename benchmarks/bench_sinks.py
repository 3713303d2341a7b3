"""Sink throughput per destination type against a local receiver, alerts/s.

For each destination (Slack, Splunk HEC, Elasticsearch bulk, Loki, webhook, syslog over TCP, file)
the figure is `build` + `delivery.deliver` of N realistic alerts (escaping, JSON, batching, the
HTTP sender with keep-alive, outcome handling). The baseline is the bare transport floor measured
in the same process: the same payload bytes, serialized beforehand, POSTed with `http.client` (or
written with `socket.sendall`, or `file.write`), in the same batch sizes, with no escaping, no
outcome parsing and no retry logic. The ratio is figure / baseline: how much of the raw transport
rate the sink keeps.

The receivers run in a separate process (so they do not share the GIL with the sink) and answer
each API's success response without validating it; shape checks live in the integration tests.
Kafka is not in the loop: the broker path is benchmarked by bench_codec/bench_worker.

Run: `.venv/bin/python -m benchmarks.bench_sinks [--alerts N] [--runs R] [--batch B]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import socket
import socketserver
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider

from benchmarks.results import median_rate, record
from sinks import elastic, file, loki, slack, splunk, syslog, webhook
from sinks.alert import Alert, decode_alert
from sinks.base import Destination
from sinks.config import RetryConfig
from sinks.delivery import deliver
from sinks.http import HttpConfig
from sinks.metrics import create_metrics
from sinks.options import Secret

LIMIT = 8192
SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "unit" / "sinks" / "alert_sample.json"
_REPLIES = {
    "/slack": (200, b"ok"),
    "/services/collector/event": (200, b'{"text":"Success","code":0}'),
    "/_bulk": (200, b'{"took":1,"errors":false,"items":[]}'),
    "/loki/api/v1/push": (204, b""),
    "/hook": (200, b'{"ok":true}'),
}


def _serve(pipe: Connection) -> None:
    """Receiver process: one HTTP server answering every API's success, one TCP discard server."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait 40 ms for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, body = _REPLIES.get(self.path.split("?")[0], (404, b""))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Discard(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while self.request.recv(1 << 16):
                pass

    http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tcp_server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Discard)
    threading.Thread(target=tcp_server.serve_forever, daemon=True).start()
    pipe.send((http_server.server_address[1], tcp_server.server_address[1]))
    http_server.serve_forever()


def alerts(n: int) -> list[Alert]:
    base = json.loads(SAMPLE.read_text())
    rng = random.Random(1)
    out = []
    for i in range(n):
        base["uuid"] = f"00000000-0000-4000-8000-{i:012d}"
        base["output_fields"]["proc.cmdline"] = "bash -c " + "x" * rng.randint(0, 200)
        out.append(decode_alert(json.dumps(base).encode()))
    return out


def destinations(http_port: int, tcp_port: int, directory: Path, batch: int) -> dict[str, Destination]:
    def http(path: str = "") -> HttpConfig:
        return HttpConfig(url=f"http://127.0.0.1:{http_port}{path}")

    return {
        "slack": slack.SlackDestination(slack.SlackConfig(http=http("/slack")), LIMIT),
        "splunk": splunk.SplunkDestination(splunk.SplunkConfig(http=http(), token=Secret("t")), LIMIT, batch),
        "elasticsearch": elastic.ElasticDestination(elastic.ElasticConfig(http=http()), LIMIT, batch),
        "loki": loki.LokiDestination(loki.LokiConfig(http=http()), LIMIT, batch),
        "webhook": webhook.WebhookDestination(webhook.WebhookConfig(http=http("/hook")), LIMIT),
        "syslog-cef": syslog.SyslogDestination(
            syslog.SyslogConfig(host="127.0.0.1", port=tcp_port, format="cef"), LIMIT, batch
        ),
        "file": file.FileDestination(
            file.FileConfig(path=str(directory / "a.jsonl"), fsync="interval"), LIMIT, batch
        ),
    }


_PATHS = {
    "slack": "/slack",
    "splunk": "/services/collector/event",
    "elasticsearch": "/_bulk",
    "loki": "/loki/api/v1/push",
    "webhook": "/hook",
}


def raw_transport(
    kind: str, payloads: list[bytes], step: int, http_port: int, tcp_port: int, directory: Path
) -> Callable[[], int]:
    """The floor: pre-built bytes through the bare transport, in the same batch sizes."""
    chunks = [payloads[i : i + step] for i in range(0, len(payloads), step)]
    if kind == "loki":
        bodies = [b'{"streams":[' + b",".join(c) + b"]}" for c in chunks]
    else:
        bodies = [b"".join(c) for c in chunks]

    def post() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        for body in bodies:
            conn.request("POST", _PATHS[kind], body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
        conn.close()
        return len(payloads)

    def send() -> int:
        with socket.create_connection(("127.0.0.1", tcp_port)) as sock:
            for body in bodies:
                sock.sendall(body)
        return len(payloads)

    def write() -> int:
        with open(directory / "raw.jsonl", "ab") as f:
            for body in bodies:
                f.write(body)
                f.flush()
        return len(payloads)

    return {"syslog-cef": send, "file": write}.get(kind, post)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=_serve, args=(child,), daemon=True)
    server.start()
    http_port, tcp_port = parent.recv()
    sample = alerts(args.alerts)
    metrics = create_metrics(MeterProvider())
    retry = RetryConfig(max_attempts=3, initial_backoff_s=0.01)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sinks-") as tmp:
            directory = Path(tmp)
            for kind, destination in destinations(http_port, tcp_port, directory, args.batch).items():

                def sink_run(destination: Destination = destination, kind: str = kind) -> int:
                    payloads = [destination.build(a) for a in sample]
                    report = deliver(
                        destination,
                        payloads,
                        retry,
                        lambda _: True,
                        random.Random(1),
                        metrics,
                        {"destination": kind},
                    )
                    assert not report.dead, report.dead[:1]
                    return len(report.accepted)

                rate, rates = median_rate(sink_run, args.runs)
                payloads = [destination.build(a) for a in sample]
                floor, _ = median_rate(
                    raw_transport(kind, payloads, destination.max_batch, http_port, tcp_port, directory),
                    args.runs,
                )
                destination.close()
                record(
                    f"sink {kind}",
                    f"{rate:,.0f} alerts/s",
                    f"bare transport {floor:,.0f}/s",
                    rate / floor,
                    args.runs,
                    {
                        "alerts_per_s": round(rate),
                        "baseline_per_s": round(floor),
                        "batch": destination.max_batch,
                        "alerts": args.alerts,
                    },
                )
    finally:
        server.terminate()
        server.join(timeout=10)


if __name__ == "__main__":
    main()
