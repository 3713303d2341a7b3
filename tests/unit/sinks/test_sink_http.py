"""The HTTP sender: Retry-After parsing, redaction of secrets, and its bounds against a hostile
receiver (a total deadline, a bounded response body), the last against a raw local socket."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sinks.errors import RetryableError
from sinks.http import HttpConfig, HttpSender, parse_retry_after, redact
from sinks.options import Secret


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 8, 21, 10, 15, 30, tzinfo=UTC)
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Fri, 21 Aug 2026 10:16:00 GMT", now) == 30.0
    assert parse_retry_after("Fri, 21 Aug 2026 10:00:00 GMT", now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_redact_removes_every_secret_value() -> None:
    token = Secret("abc123")
    assert redact("bad token abc123 in https://x/abc123", [token]) == "bad token *** in https://x/***"


class _RawServer:
    """A receiver that answers each connection with a script of (bytes, pause) writes."""

    def __init__(self, scripts: list[list[tuple[bytes, float]]]) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        self._scripts = scripts
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for script in self._scripts:
            conn, _ = self._listener.accept()
            self.connections += 1
            with conn:
                conn.recv(65536)
                try:
                    for data, pause in script:
                        conn.sendall(data)
                        time.sleep(pause)
                except OSError:
                    pass  # the sender gave up and closed: what the slow scripts expect

    def close(self) -> None:
        self._listener.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_receiver_dripping_its_reply_fails_the_attempt_at_the_total_deadline() -> None:
    drip = [(bytes([b]), 0.2) for b in OK]  # each byte well inside the per-read timeout
    server = _RawServer([drip, [(OK, 0)]])
    sender = HttpSender(HttpConfig(url=f"http://127.0.0.1:{server.port}/", timeout_s=1.0))
    try:
        with pytest.raises(RetryableError, match="deadline|timed out"):
            sender.post("", b"{}", {})
        # the late bytes of the first reply are never read as the answer to the next request
        assert sender.post("", b"{}", {}).body == b"ok"
        assert server.connections == 2
    finally:
        sender.close()
        server.close()


class _ClosingHandler(BaseHTTPRequestHandler):
    """http.server's default receiver: HTTP/1.0, the body ends when the connection does."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        if self.protocol_version == "HTTP/1.1":
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class _ClosingHandler11(_ClosingHandler):
    protocol_version = "HTTP/1.1"


@pytest.mark.parametrize("handler", [_ClosingHandler, _ClosingHandler11])
def test_a_receiver_that_closes_after_its_reply_is_delivered_to_every_time(
    handler: type[BaseHTTPRequestHandler],
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender = HttpSender(HttpConfig(url=f"http://127.0.0.1:{server.server_address[1]}/hook", timeout_s=5))
    try:
        for _ in range(3):
            response = sender.post("", b"{}", {})
            assert (response.status, response.body) == (200, b"ok")
    finally:
        sender.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"100000\r\n" + b"x" * 0x100000 + b"\r\n",
])
def test_a_huge_response_body_is_not_read(reply: bytes) -> None:
    chunked_more = [(b"100000\r\n" + b"x" * 0x100000 + b"\r\n", 0)] * 4 if b"chunked" in reply else []
    # the receiver keeps the connection open afterwards: the sender must stop on size, not on EOF
    server = _RawServer([[(reply, 0), *chunked_more, (b"", 2.0)]])
    sender = HttpSender(HttpConfig(url=f"http://127.0.0.1:{server.port}/", timeout_s=5.0))
    try:
        with pytest.raises(RetryableError, match="over 4194304"):
            sender.post("", b"{}", {})
    finally:
        sender.close()
        server.close()


def test_disabling_certificate_verification_is_logged_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="peregrine.sink"):
        HttpSender(HttpConfig(url=Secret("https://hooks.example/services/T0/B0/secret-token"), verify=False))
    assert "verification is OFF for https://hooks.example" in caplog.text
    assert "secret-token" not in caplog.text
