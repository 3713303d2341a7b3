"""An alert storm through the sink (issues 16, 17): what Slack receives, how fast another alert passes.

100,000 alerts of one rule and pod are put on the alerts topic in about a minute of event time, with
one Warning alert of another rule and node in the middle. The sink runs in this process with two
destinations: Slack (stand-in receiver, aggregated: 60 s windows, paced at Slack's 1/s with a
burst of 5) and a file (every alert, the SIEM case). Figures:

* Slack messages for the storm, and the alerts they stand for (must be 100,001 counting the other);
* the other alert's delay at Slack: from the sink's start (the storm already on the topic; group
  join included) and from the storm's first Slack message (issue 16 had it stuck behind 100,049);
* the file destination's time to write all 100,001 alerts.

The baseline is the storm's size: 100,001 Slack messages, about 28 hours at 1/s, without aggregation.

Run: `.venv/bin/python -m benchmarks.bench_sink_storm [--alerts N] [--bootstrap HOST:PORT]`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from opentelemetry.sdk.metrics import MeterProvider

from benchmarks.results import record
from devtools import localkafka
from sinks.config import parse_config
from sinks.metrics import create_metrics
from sinks.service import run

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "unit" / "sinks" / "alert_sample.json"
MORE = re.compile(r"and ([\d,]+) more like this")
OTHER = "00000000-0000-4000-9000-000000000001"


class Slack:
    """A Slack webhook stand-in: records each message's arrival time and text; answers ok."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        slack = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Slack

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with slack.lock:
                    slack.messages.append((time.monotonic(), body.decode()))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T/B/X"

    def represented(self) -> int:
        with self.lock:
            texts = [t for _, t in self.messages]
        return sum(int(m.group(1).replace(",", "")) if (m := MORE.search(t)) else 1 for t in texts)


def storm(n: int) -> list[bytes]:
    """``n`` alerts over 60 s of event time, the other alert in the middle."""
    sample = json.loads(SAMPLE.read_text())
    base_ns = 1_787_307_330 * 1_000_000_000
    values = []
    for i in range(n):
        t = base_ns + i * 60_000_000_000 // n
        s, ns = divmod(t, 1_000_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{ns:09d}Z"
        values.append(json.dumps({**sample, "uuid": str(uuid.UUID(int=i)), "time": stamp}).encode())
    other = {**sample, "uuid": OTHER, "priority": "Warning", "rule": "Contact K8S API Server From Container",
             "hostname": "node-2", "output_fields": {"k8s.pod.name": "other-pod"}}
    values.insert(n // 2, json.dumps(other).encode())
    return values


def measure(bootstrap: str, n: int) -> dict[str, float]:
    topic, group = f"storm-{uuid.uuid4().hex[:8]}", f"storm-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until its future resolves
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for i, value in enumerate(storm(n)):
        producer.produce(topic, value=value, key=f"container-{i % 7}".encode())
        if i % 1000 == 999:
            producer.poll(0)
    assert producer.flush(120) == 0
    slack = Slack()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "siem.jsonl"
        doc = {
            "kafka": {"bootstrap_servers": bootstrap, "topic": topic, "dlq_topic": f"{topic}-dlq",
                      "group_prefix": group},
            "destinations": [
                {"name": "slack", "type": "slack", "webhook_url_env": "SLACK_URL",
                 "aggregate": {"window_s": 60, "sample_fields": ["proc.pid"]}},
                {"name": "siem", "type": "file", "path": str(path)},
            ],
        }
        config = parse_config(doc, "bench", {"SLACK_URL": slack.url})
        stop = threading.Event()
        started = time.monotonic()
        thread = threading.Thread(target=run, args=(config, list(config.destinations), stop,
                                                    create_metrics(MeterProvider())), daemon=True)
        thread.start()
        other_s = file_s = None
        after_first_s = -1.0
        reported = started
        deadline = started + 600
        while time.monotonic() < deadline and (slack.represented() < n + 1 or file_s is None):
            now = time.monotonic()
            with slack.lock:
                arrived = [t for t, text in slack.messages if OTHER in text]
            if other_s is None and arrived:
                other_s = arrived[0] - started
                with slack.lock:  # from the storm's first message: the sink was consuming by then
                    after_first_s = arrived[0] - slack.messages[0][0]
            written = len(path.read_bytes().splitlines()) if path.exists() else 0
            if file_s is None and written >= n + 1:
                file_s = now - started
            if now - reported >= 10:  # progress, for a run that takes long
                reported = now
                print(f"{now - started:5.0f}s slack {len(slack.messages)} messages for "
                      f"{slack.represented()} alerts, file {written}", file=sys.stderr, flush=True)
            time.sleep(0.2)
        stop.set()
        thread.join(60)
    return {"messages": len(slack.messages), "represented": slack.represented(),
            "other_s": other_s if other_s is not None else -1.0, "other_after_first_s": after_first_s,
            "file_s": file_s if file_s is not None else -1.0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--bootstrap", help="use this broker instead of starting one")
    args = ap.parse_args(argv)
    if args.bootstrap:
        result = measure(args.bootstrap, args.alerts)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            cluster = localkafka.start(Path(tmp) / "kafka", n=1, heap="1g")
            try:
                result = measure(cluster.bootstrap, args.alerts)
            finally:
                localkafka.stop(cluster)
    figure = (f"{result['messages']} Slack messages standing for {result['represented']:,} alerts; "
              f"other alert at Slack {result['other_s']:.2f} s after start "
              f"({result['other_after_first_s']:.2f} s after the storm's first message); file complete after "
              f"{result['file_s']:.1f} s")
    record("sink storm (slack aggregated, file in full)", figure,
           f"{args.alerts + 1:,} Slack messages without aggregation", None, 1, {**result})


if __name__ == "__main__":
    main()
