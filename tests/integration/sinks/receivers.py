"""Local stand-in receivers for the HTTP destinations (Slack, Splunk HEC, Elasticsearch, Loki,
webhook), and `Rsyslog`, the handle on the real rsyslogd that `serve_rsyslog` starts.

These are receivers, not the real services: each runs a `ThreadingHTTPServer` on 127.0.0.1 (or the
``host`` given: pods reach the host only at a routable address) in a thread, checks the request
against the documented shape of the API it stands in for (path, method, headers, authentication,
body framing and schema), records every alert it accepted, and lists every violation in ``problems``
(tests assert it stays empty). Tests can script the next responses (`Status`, `Slow`, `Broken`) or
take the receiver down (`down`: 503 to everything).

The Elasticsearch stand-in dedups by ``_id`` like the real one (``create`` on an existing id answers
409), so tests can count duplicates where the real destination would absorb them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SLACK_PATH = "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
SLACK_COLOURS = {"#e20b0b", "#ff5400", "#ffc700", "#5bffb5", "#68c2ff", "#ccfff2"}
HEC_TOKEN = "11111111-2222-3333-4444-555555555555"


@dataclass(frozen=True)
class Status:
    """Answer with this status (and headers, body) instead of accepting."""

    code: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Slow:
    """Wait this long before handling the request normally (a client timeout makes it a failure)."""

    seconds: float


@dataclass(frozen=True)
class Broken:
    """Close the connection without an HTTP response."""


Behaviour = Status | Slow | Broken


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """One stand-in API. ``kind`` is slack, splunk, elasticsearch, loki or webhook."""

    def __init__(
        self, kind: str, *, hec_ack: bool = False, slack_path: str = SLACK_PATH, hec_token: str = HEC_TOKEN,
        host: str = "127.0.0.1",
    ) -> None:
        self.kind = kind
        self.hec_token = hec_token
        self.hec_ack = hec_ack
        self.slack_path = slack_path
        self.requests: list[Recorded] = []
        self.alerts: list[dict[str, Any]] = []  # accepted alerts, in arrival order
        self.documents: dict[str, dict[str, Any]] = {}  # Elasticsearch: _id -> source
        self.problems: list[str] = []
        self.script: deque[Behaviour] = deque()
        self.down = threading.Event()
        self.lock = threading.Lock()
        self._next_ack = 0
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        # `stop` waits for the serving loop to see the shutdown, which it looks for once per poll:
        # at the default 0.5 s that was half a second of every test's teardown
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name=f"receiver-{kind}",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond(self, *behaviours: Behaviour) -> None:
        with self.lock:
            self.script.extend(behaviours)

    def uuids(self) -> list[str]:
        with self.lock:
            return [a["uuid"] for a in self.alerts]

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.alerts) >= count:
                    return True
            time.sleep(0.02)
        return False

    # Each handler returns (status, headers, body) and records accepted alerts.

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.requests.append(Recorded(path, headers, body))
        handler: Callable[[str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]] = getattr(
            self, f"_{self.kind}"
        )
        return handler(path, headers, body)

    def _problem(self, text: str) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            self.problems.append(text)
        return 400, {"Content-Type": "text/plain"}, text.encode()

    def _accept(self, alerts: list[dict[str, Any]]) -> None:
        with self.lock:
            self.alerts.extend(alerts)

    def _slack(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path != self.slack_path:
            return 404, {}, b"no_service"
        if not headers.get("content-type", "").startswith("application/json"):
            return self._problem("slack: Content-Type must be application/json")
        try:
            doc = json.loads(body)
            attachment = doc["attachments"][0]
            blocks = attachment["blocks"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return self._problem(f"slack: not a Block Kit payload: {exc!r}")
        if not isinstance(doc.get("text"), str) or attachment.get("color") not in SLACK_COLOURS:
            return self._problem("slack: missing fallback text or unknown colour")
        if len(blocks) > 50 or any(
            b.get("type") not in ("section", "context", "header", "divider") for b in blocks
        ):
            return self._problem("slack: invalid blocks")
        for block in blocks:
            if block["type"] == "section" and len(block.get("text", {}).get("text", "")) > 3000:
                return self._problem("slack: section text over 3000 characters")
            if len(block.get("fields", [])) > 10:
                return self._problem("slack: more than 10 fields")
            problem = _slack_text_problem(block)
            if problem:
                return self._problem(f"slack: {problem}")
        uuid = blocks[-1]["elements"][0]["text"].rsplit(" · ", 1)[-1]
        self._accept([{"uuid": uuid, "payload": doc}])
        return 200, {"Content-Type": "text/plain"}, b"ok"

    def _splunk(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if headers.get("authorization") != f"Splunk {self.hec_token}":
            return 401, {"Content-Type": "application/json"}, b'{"text":"Invalid authorization","code":3}'
        channel = headers.get("x-splunk-request-channel")
        if self.hec_ack and not channel:
            return 400, {"Content-Type": "application/json"}, b'{"text":"Data channel is missing","code":10}'
        if path == "/services/collector/ack":
            acks = json.loads(body).get("acks", [])
            reply = {"acks": {str(a): True for a in acks}}
            return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()
        if path != "/services/collector/event":
            return 404, {}, b'{"text":"The requested URL was not found on this server.","code":404}'
        events, decoder, text, pos = [], json.JSONDecoder(), body.decode("utf-8"), 0
        while pos < len(text):
            try:
                envelope, end = decoder.raw_decode(text, pos)
            except ValueError:
                return (
                    400,
                    {},
                    json.dumps(
                        {"text": "Invalid data format", "code": 6, "invalid-event-number": len(events)}
                    ).encode(),
                )
            pos = end
            if not isinstance(envelope, dict) or not isinstance(envelope.get("event"), dict):
                return self._problem("splunk: envelope without an event object")
            if not isinstance(envelope.get("time"), int | float) or "fields" not in envelope:
                return self._problem("splunk: envelope without numeric time or indexed fields")
            if envelope["fields"].get("alert_id") != envelope["event"].get("uuid"):
                return self._problem("splunk: fields.alert_id differs from the alert uuid")
            events.append(envelope["event"])
        if not events:
            return 400, {}, b'{"text":"No data","code":5}'
        self._accept(events)
        reply: dict[str, Any] = {"text": "Success", "code": 0}
        if self.hec_ack:
            with self.lock:
                reply["ackId"] = self._next_ack
                self._next_ack += 1
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    def _elasticsearch(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path.split("?")[0] != "/_bulk":
            return 404, {}, b'{"error":"no handler"}'
        if headers.get("content-type") != "application/x-ndjson":
            return self._problem("elasticsearch: Content-Type must be application/x-ndjson")
        if not body.endswith(b"\n"):
            return 400, {}, b'{"error":"The bulk request must be terminated by a newline [\\\\n]"}'
        lines = body.split(b"\n")[:-1]
        if len(lines) % 2:
            return self._problem("elasticsearch: odd number of NDJSON lines")
        items, accepted = [], []
        for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
            action, source = json.loads(action_line), json.loads(source_line)
            meta = action.get("create")
            if not isinstance(meta, dict) or not meta.get("_id") or not meta.get("_index"):
                return self._problem("elasticsearch: action must be create with _index and _id")
            if source.get("event", {}).get("kind") != "alert" or "@timestamp" not in source:
                return self._problem("elasticsearch: document is not an ECS alert")
            with self.lock:
                exists = meta["_id"] in self.documents
                if not exists:
                    self.documents[meta["_id"]] = source
            status = 409 if exists else 201
            if not exists:
                accepted.append(source["falco"])
            items.append({"create": {"_index": meta["_index"], "_id": meta["_id"], "status": status}})
        self._accept(accepted)
        reply = {"took": 1, "errors": any(i["create"]["status"] >= 300 for i in items), "items": items}
        return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()

    def _loki(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path != "/loki/api/v1/push":
            return 404, {}, b"404 page not found"
        if headers.get("content-type") != "application/json":
            return self._problem("loki: Content-Type must be application/json")
        try:
            streams = json.loads(body)["streams"]
            alerts = []
            for stream in streams:
                if not all(isinstance(k, str) and isinstance(v, str) for k, v in stream["stream"].items()):
                    return self._problem("loki: labels must be strings")
                for stamp, line in stream["values"]:
                    if not (isinstance(stamp, str) and stamp.isdigit()):
                        return self._problem("loki: timestamp must be a string of nanoseconds")
                    alerts.append(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            return self._problem(f"loki: malformed push: {exc!r}")
        self._accept(alerts)
        return 204, {}, b""

    def _webhook(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        try:
            alert = json.loads(body)
        except ValueError as exc:
            return self._problem(f"webhook: body is not JSON: {exc}")
        if headers.get("x-peregrine-alert-id") != alert.get("uuid"):
            return self._problem("webhook: X-Peregrine-Alert-Id differs from the uuid")
        self._accept([alert])
        return 200, {"Content-Type": "application/json"}, b'{"ok":true}'


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sender expects
        disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed-ACK stall

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                behaviour = receiver.script.popleft() if receiver.script else None
            if isinstance(behaviour, Slow):
                time.sleep(behaviour.seconds)
            if isinstance(behaviour, Broken):
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if receiver.down.is_set():
                self._reply(503, {"Content-Type": "text/plain"}, b"down for the outage test")
                return
            if isinstance(behaviour, Status):
                self._reply(behaviour.code, behaviour.headers, behaviour.body)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._reply(*receiver.handle(self.path, headers, body))

        def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@dataclass
class Rsyslog:
    directory: Path
    tcp_port: int
    tls_port: int
    ca_file: Path
    relp_port: int
    starter: Callable[[], subprocess.Popen[bytes]]
    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL, as a crash: no flush, no goodbye on open connections."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def start(self) -> None:
        """A new rsyslogd on the same ports and files, after `kill`."""
        self.process = self.starter()

    def messages(self, listener: str) -> list[tuple[str, dict[str, str]]]:
        """(raw message, rsyslog's parsed fields) for each message received on ``tcp`` or ``tls``."""
        raw_file, parsed_file = self.directory / f"{listener}.raw", self.directory / f"{listener}.jsonl"
        if not parsed_file.exists():
            return []
        raws = raw_file.read_text(encoding="utf-8").splitlines()
        parsed = [json.loads(line) for line in parsed_file.read_text(encoding="utf-8").splitlines()]
        return list(zip(raws, parsed, strict=False))

    def wait_for(self, listener: str, count: int, timeout: float = 20.0) -> list[tuple[str, dict[str, str]]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages(listener)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        return self.messages(listener)


def _slack_text_problem(block: dict[str, Any]) -> str | None:
    """Block Kit's rules for text objects (docs.slack.dev, text object and header block): a type of
    plain_text or mrkdwn, 1 to 3000 characters, `emoji` only on plain_text, `verbatim` only on
    mrkdwn; a header holds plain_text of at most 150 characters; a field at most 2000."""
    objects = [block["text"]] if "text" in block else []
    objects += block.get("fields", []) + block.get("elements", [])
    for obj in objects:
        kind, text = obj.get("type"), obj.get("text")
        if kind not in ("plain_text", "mrkdwn") or not isinstance(text, str) or not 1 <= len(text) <= 3000:
            return f"invalid text object {obj!r:.80}"
        if ("emoji" in obj and kind != "plain_text") or ("verbatim" in obj and kind != "mrkdwn"):
            return "emoji is for plain_text only, verbatim for mrkdwn only"
    header = block["text"] if block["type"] == "header" else None
    if header is not None and (header["type"] != "plain_text" or len(header["text"]) > 150):
        return "a header is plain_text of at most 150 characters"
    if any(len(f["text"]) > 2000 for f in block.get("fields", [])):
        return "a field over 2000 characters"
    return None


def _free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        [
            "openssl",
            "req",
            "-x509",
            *ec,
            "-keyout",
            ca_key,
            "-out",
            ca,
            "-subj",
            "/CN=peregrine-test-ca",
            "-days",
            "2",
        ],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost"],
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-out",
            cert,
            "-days",
            "2",
            "-extfile",
            ext,
        ],
    ):
        subprocess.run([str(c) for c in command], check=True, capture_output=True, timeout=30)
    return ca, cert, key


_CONFIG = """
global(workDirectory="{work}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
# Direct: an action runs before the input returns, so what imrelp answered 200 for is already in
# the output file when rsyslogd is killed (a queued message would die with the process).
main_queue(queue.type="Direct")
module(load="imtcp")
module(load="imrelp")
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app_name" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structured_data" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
ruleset(name="tcp") {{
  action(type="omfile" file="{dir}/tcp.raw" template="raw")
  action(type="omfile" file="{dir}/tcp.jsonl" template="fields")
}}
ruleset(name="tls") {{
  action(type="omfile" file="{dir}/tls.raw" template="raw")
  action(type="omfile" file="{dir}/tls.jsonl" template="fields")
}}
ruleset(name="relp") {{
  action(type="omfile" file="{dir}/relp.raw" template="raw")
  action(type="omfile" file="{dir}/relp.jsonl" template="fields")
}}
input(type="imtcp" address="{address}" port="{tcp}" ruleset="tcp")
input(type="imrelp" address="{address}" port="{relp}" ruleset="relp")
input(type="imtcp" address="{address}" port="{tls}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"""


def serve_rsyslog(directory: Path, address: str) -> Iterator[Rsyslog]:
    """A real rsyslogd writing into ``directory`` what it receives on ``address`` (the `rsyslog`
    fixture's body; other scopes and addresses use it too: pods reach the host only at a routable
    address of its own). Stopped when the generator is closed."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(binary).exists():
        raise RuntimeError("rsyslogd not installed: run scripts/setup (it installs rsyslog, gnutls and relp)")
    work = directory / "work"
    work.mkdir()
    ca, cert, key = _certificates(directory)
    tcp, tls, relp = _free_port(address), _free_port(address), _free_port(address)
    conf = directory / "rsyslog.conf"
    conf.write_text(_CONFIG.format(work=work, ca=ca, cert=cert, key=key, dir=directory, tcp=tcp, tls=tls,
                                   relp=relp, address=address))
    log = (directory / "rsyslogd.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [binary, "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_listening(process, address, [tcp, tls, relp], directory / "rsyslogd.log")
        return process

    server = Rsyslog(directory, tcp, tls, ca, relp, start)
    try:
        server.process = start()
        yield server
    finally:
        process = server.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()


def _wait_listening(process: subprocess.Popen[bytes], address: str, ports: list[int], log: Path) -> None:
    deadline = time.monotonic() + 15
    pending = list(ports)
    while pending and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rsyslogd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection((address, pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"rsyslogd did not listen on {pending}: {log.read_text()}")
