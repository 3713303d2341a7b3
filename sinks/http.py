"""The one HTTP sender every HTTP destination uses: keep-alive, TLS, timeouts, status mapping.

One sender per destination, used by that destination's runner thread only (no locking). Status
mapping: 2xx accepted; 429, 408, 425 and 5xx retryable, honouring ``Retry-After`` (seconds or an
HTTP date); any other status is permanent. Connection errors, timeouts, TLS failures and malformed
responses are retryable and drop the connection. Every text that can reach a log or the DLQ passes
through `redact`, because a URL (Slack webhooks) or a header can be the credential itself.

``timeout_s`` bounds the whole exchange, not each socket operation: a receiver that drips one
byte just inside the per-read timeout would otherwise hold an attempt (and the destination's
offsets) for as long as it likes. Every read and write gets the time left until the deadline, and
a response that is not complete by then fails the attempt and closes the connection, so bytes
still in flight can never be read as the reply to the next request on a reused connection. A
response body over `MAX_RESPONSE_BYTES` is not read further (the connection is dropped): a receiver
cannot grow the sink's memory by answering with gigabytes.
"""

from __future__ import annotations

import functools
import http.client
import io
import logging
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from sinks.errors import PermanentError, RetryableError
from sinks.options import Options, Secret

log = logging.getLogger("peregrine.sink")

USER_AGENT = "peregrine-sink/0.1"
# Enough for an Elasticsearch bulk reply to the largest batch (about 200 bytes an item); far below
# what would matter for the sink's memory.
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    url: str | Secret  # a Secret when the URL is itself the credential (Slack incoming webhooks)
    timeout_s: float = 10.0
    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def read_url(options: Options) -> str | Secret:
    """``url``, or ``url_env`` when the URL embeds a credential."""
    url: str | Secret = options.secret("url") if options.has("url_env") else options.text("url")
    raw = url.reveal() if isinstance(url, Secret) else url
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Never echo the URL: it may be the secret.
        raise options.error("url", "must be an http:// or https:// URL with a host")
    return url


def parse_http(options: Options, url: str | Secret) -> HttpConfig:
    """``timeout_s`` and a ``tls`` section (``verify``, ``ca_file``, ``cert_file``, ``key_file``)."""
    tls = options.section("tls")
    config = HttpConfig(
        url=url,
        timeout_s=options.number("timeout_s", 10.0, minimum=0.1),
        verify=tls.flag("verify", True),
        ca_file=tls.optional_text("ca_file"),
        cert_file=tls.optional_text("cert_file"),
        key_file=tls.optional_text("key_file"),
    )
    tls.done()
    return config


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def redact(text: str, secrets: Iterable[Secret]) -> str:
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, "***")
    return text


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpSender:
    def __init__(self, config: HttpConfig, secrets: Iterable[Secret] = ()) -> None:
        raw = config.url.reveal() if isinstance(config.url, Secret) else config.url
        parts = urlsplit(raw)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._base_path = parts.path.rstrip("/")
        self._query = f"?{parts.query}" if parts.query else ""
        self._timeout = config.timeout_s
        self._secrets = tuple(secrets) + (_url_secrets(config.url) if isinstance(config.url, Secret) else ())
        self._context = _tls_context(config) if self._https else None
        self._conn: http.client.HTTPConnection | None = None
        self._reused = False

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to base path + ``path``; raises RetryableError on transport failures."""
        target = f"{self._base_path}{path}{self._query}" or "/"
        all_headers = {"User-Agent": USER_AGENT, "Content-Length": str(len(body)), **headers}
        try:
            return self._exchange(target, body, all_headers)
        except _STALE_CONNECTION:
            if not self._reused:
                self.close()
                raise RetryableError("connection closed by the receiver") from None
            # A kept-alive connection the receiver closed while idle: one fresh attempt.
            self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise RetryableError(self.redact(f"transport error: {type(exc).__name__}: {exc}")) from None
        try:
            return self._exchange(target, body, all_headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise RetryableError(self.redact(f"transport error: {type(exc).__name__}: {exc}")) from None

    def _exchange(self, target: str, body: bytes, headers: Mapping[str, str]) -> Response:
        deadline = time.monotonic() + self._timeout
        conn = self._conn
        if conn is None:
            conn = self._connect()
            self._reused = False
        if conn.sock is not None:
            conn.sock.settimeout(self._timeout)  # a reused socket: the whole timeout again
        conn.request("POST", target, body=body, headers=dict(headers))
        conn.response_class = functools.partial(_DeadlineResponse, deadline=deadline)  # type: ignore[assignment]
        reply = conn.getresponse()
        length = reply.getheader("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_RESPONSE_BYTES:
            self.close()
            raise RetryableError(f"response body of {length} bytes is over {MAX_RESPONSE_BYTES}")
        data = _read_bounded(reply)
        if data is None:
            self.close()
            raise RetryableError(f"response body over {MAX_RESPONSE_BYTES} bytes")
        if reply.will_close or not reply.isclosed():
            self.close()  # the receiver asked to, or the reply was not read to its end
        else:
            self._reused = True
        return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            self._conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        else:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def check(self, response: Response, what: str) -> None:
        """Raise for a non-2xx response; the message has the status and a redacted body snippet."""
        if 200 <= response.status < 300:
            return
        snippet = self.redact(response.body[:300].decode("utf-8", errors="replace"))
        reason = f"{what}: HTTP {response.status}: {snippet}".rstrip(": ")
        if response.status in _RETRYABLE_STATUS:
            raise RetryableError(reason, parse_retry_after(response.headers.get("retry-after")))
        raise PermanentError(reason)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._reused = False


def _read_bounded(reply: http.client.HTTPResponse) -> bytes | None:
    """The whole body, or None once it passes MAX_RESPONSE_BYTES."""
    parts: list[bytes] = []
    size = 0
    while piece := reply.read(min(65536, MAX_RESPONSE_BYTES + 1 - size)):
        parts.append(piece)
        size += len(piece)
        if size > MAX_RESPONSE_BYTES:
            return None
    return b"".join(parts)


class _DeadlineReader(io.RawIOBase):
    """The socket as the response reads it, each read limited to the time left.

    It reads through a socket file, as http.client's own reader does: that file keeps the socket
    open until the body is read. A reply that ends the connection (HTTP/1.0, `Connection: close`)
    makes http.client close the connection before the body is read, and a bare socket would then
    be gone (EBADF on every delivery to such a receiver)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._file = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int | None:  # type: ignore[override]
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete response before the deadline")
        self._sock.settimeout(left)
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: object, deadline: float, **kwargs: object) -> None:
        super().__init__(sock, *args, **kwargs)  # type: ignore[arg-type]
        self.fp.close()  # http.client's reader, replaced by one with a deadline
        self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))


def _reveal(url: str | Secret) -> str:
    return url.reveal() if isinstance(url, Secret) else url


def _url_secrets(url: Secret) -> tuple[Secret, ...]:
    """A secret URL leaks through its parts too: a receiver may echo the path or the token alone."""
    parts = urlsplit(url.reveal())
    pieces = [url.reveal(), parts.path, parts.query, *parts.path.split("/")]
    # Longest first, so the whole URL is redacted before its parts; short segments are not secret.
    return tuple(Secret(p) for p in sorted(set(pieces), key=len, reverse=True) if len(p) >= 8)


def _tls_context(config: HttpConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify:
        # the opt-in is `tls.verify: false`, explicit in the file; say it at every start
        log.warning("TLS certificate verification is OFF for https://%s (tls.verify: false): "
                    "anyone on the path can read and forge this destination's traffic",
                    urlsplit(_reveal(config.url)).hostname)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    return context
