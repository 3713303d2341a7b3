"""Syslog RFC 5424 over TCP (RFC 6587 octet counting), TLS (RFC 5425) or RELP, message as JSON, CEF or LEEF.

Keys: ``host``, ``port`` (514; 6514 with TLS; 2514 for RELP), ``protocol`` (``tcp`` or ``relp``),
``format``, ``facility``, ``app_name``, ``msgid``, ``enterprise_id``, ``max_message_bytes``,
``timeout_s`` and a ``tls`` section (``enabled``, ``ca_file``, ``cert_file``, ``key_file``,
``server_name``, ``verify``); RELP runs over TLS too.

Frame: ``MSG-LEN SP <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG``. PRI is facility * 8
+ the alert's priority (Falco's priorities are syslog severities). Structured data carries rule,
priority, uuid, namespace, pod and container under ``falco@<enterprise_id>`` (32473 is the RFC's
documentation number: set your own Private Enterprise Number). MSG has no BOM, so JSON/CEF/LEEF
parsers read it as is. A frame never contains a raw newline: JSON escapes them, CEF and LEEF
formats and structured data write them as ``\\n``. LEEF uses ``^`` as its delimiter (see below).

Delivered means known to have left: with ``protocol: relp`` (rsyslog's imrelp; `sinks.relp`) the
receiver answers every message, and a batch counts only when each answer is in. Plain TCP and TLS
syslog have no acknowledgement, so there a batch counts only once the receiver's TCP has
acknowledged every byte of it (the socket's send queue, SIOCOUTQ, is empty) before ``timeout_s``:
a receiver whose buffers are full fails the batch, which is redelivered. What TCP cannot show is a
receiver that dies after its kernel took the bytes and before it read them, so the destination
keeps what it sent in the last `RETAIN_S` seconds (at most `RETAIN_BYTES`): when the next batch
finds the connection closed (readable or EOF before the batch), those frames are sent again on the
new connection before the batch. That makes TCP at-least-once while the sink process lives, at the
price of duplicates after a reconnect (the alert's uuid is in the structured data for receivers
that deduplicate); RELP needs none of it. Messages above ``max_message_bytes`` are rebuilt with
smaller values.

An alert raised while its node was losing events (``peregrine.drops.*`` output fields) carries
them whole in every format: JSON as they are; CEF as ``cn1`` (``droppedEvents``, the events lost)
and the counts and window in the next free ``csN`` (``peregrineDrops``, ``name=value`` pairs); LEEF
as ``droppedEvents`` and one ``peregrineDrops<Cause>`` attribute per field. Other alerts' messages
are unchanged.
"""

from __future__ import annotations

import fcntl
import logging
import re
import select
import socket
import ssl
import struct
import termios
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from alerts.wire import DROP_FIELDS, dropped
from rules.priority import Priority
from sinks import escape
from sinks.alert import Alert
from sinks.base import ACCEPTED, Outcome
from sinks.errors import RetryableError
from sinks.options import Options
from sinks.relp import RelpSession

FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10, "local0": 16, "local1": 17,
    "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
# CEF and LEEF severities (0-10 / 1-10), Falco's order; the CEF values are falcosidekick's.
CEF_SEVERITY = {
    Priority.DEBUG: 0, Priority.INFORMATIONAL: 3, Priority.NOTICE: 4, Priority.WARNING: 6,
    Priority.ERROR: 7, Priority.CRITICAL: 8, Priority.ALERT: 9, Priority.EMERGENCY: 10,
}
LEEF_SEVERITY = {**CEF_SEVERITY, Priority.DEBUG: 1}
VENDOR, PRODUCT, PRODUCT_VERSION = "Falcosecurity", "Falco", "peregrine-0.1.0"
# "^" (IBM's own LEEF 2.0 example) rather than TAB: syslog relays such as rsyslog rewrite control
# characters (TAB becomes "#011"), which would break every attribute.
LEEF_DELIMITER = "^"
log = logging.getLogger("peregrine.sink")
_SLUG = re.compile(r"[^a-z0-9]+")
# What a receiver's kernel may hold unread (a receive buffer autotunes up to 6 MB on Linux), and for
# how long a dead receiver may go unnoticed between batches.
RETAIN_BYTES = 8 * 1024 * 1024
RETAIN_S = 30.0


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    host: str
    port: int
    format: str = "json"  # json | cef | leef
    protocol: str = "tcp"  # tcp (RFC 6587 octet counting) | relp
    facility: int = 16
    app_name: str = "falco"
    msgid: str = "falco.alert"
    enterprise_id: int = 32473
    max_message_bytes: int = 8192
    timeout_s: float = 10.0
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    verify: bool = True


def parse(options: Options) -> SyslogConfig:
    facility = options.choice("facility", "local0", tuple(FACILITIES))
    tls = options.section("tls")
    protocol = options.choice("protocol", "tcp", ("tcp", "relp"))
    default_port = 2514 if protocol == "relp" else 6514 if tls.flag("enabled", False) else 514
    config = SyslogConfig(
        host=options.text("host"),
        port=options.integer("port", default_port, minimum=1),
        format=options.choice("format", "json", ("json", "cef", "leef")),
        protocol=protocol,
        facility=FACILITIES[facility],
        app_name=escape.syslog_token(options.text("app_name", "falco"), 48),
        msgid=escape.syslog_token(options.text("msgid", "falco.alert"), 32),
        enterprise_id=options.integer("enterprise_id", 32473, minimum=1),
        max_message_bytes=options.integer("max_message_bytes", 8192, minimum=480),
        timeout_s=options.number("timeout_s", 10.0, minimum=0.1),
        tls=tls.flag("enabled", False),
        ca_file=tls.optional_text("ca_file"),
        cert_file=tls.optional_text("cert_file"),
        key_file=tls.optional_text("key_file"),
        server_name=tls.optional_text("server_name"),
        verify=tls.flag("verify", True),
    )
    tls.done()
    return config


def rfc3339_micros(time_ns: int) -> str:
    stamp = datetime.fromtimestamp(time_ns // 1_000_000_000, UTC)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{(time_ns // 1000) % 1_000_000:06d}Z"


def build_json_message(alert: Alert, limit: int) -> str:
    return escape.json_bytes(escape.clean_json(alert.to_json_dict(), limit)).decode("utf-8")


def _key_fields(alert: Alert, limit: int) -> dict[str, str]:
    get = alert.output_fields.get
    found = {
        "suser": get("user.name"), "sproc": get("proc.name"), "spid": get("proc.pid"),
        "filePath": get("fd.name"), "cmdline": get("proc.cmdline"),
        "k8sNamespace": get("k8s.ns.name"), "k8sPod": get("k8s.pod.name"), "containerId": get("container.id"),
    }
    return {k: escape.clean(str(v), limit) for k, v in found.items() if v is not None}


def build_cef_message(alert: Alert, limit: int) -> str:
    rule = escape.clean(alert.rule, limit)
    event_class = _SLUG.sub("_", rule.lower()).strip("_") or "alert"
    header = "|".join(
        escape.cef_header(part)
        for part in (VENDOR, PRODUCT, PRODUCT_VERSION, event_class, rule)
    )
    key = _key_fields(alert, limit)
    pairs = [("rt", str(alert.time_ns // 1_000_000)), ("dvchost", escape.clean(alert.hostname, limit))]
    pairs += [(k, key[k]) for k in ("suser", "sproc", "spid", "filePath") if k in key]
    custom = [("k8sNamespace", "k8sNamespace"), ("k8sPod", "k8sPod"), ("containerId", "containerId"),
              ("cmdline", "cmdline")]
    n = 1
    for label, name in custom:
        if name in key:
            pairs += [(f"cs{n}Label", label), (f"cs{n}", key[name])]
            n += 1
    pairs += [(f"cs{n}Label", "uuid"), (f"cs{n}", alert.uuid)]
    lost = dropped(alert)
    if lost is not None:  # the events lost as CEF's custom number, the detail in the next string slot
        detail = " ".join(f"{k.removeprefix(_DROPS)}={alert.output_fields[k]}" for k in DROP_FIELDS[2:])
        pairs += [("cn1Label", "droppedEvents"), ("cn1", str(lost)),
                  (f"cs{n + 1}Label", "peregrineDrops"), (f"cs{n + 1}", detail)]  # fmt: skip
    pairs += [("cat", escape.clean(",".join(alert.tags), limit)), ("msg", escape.clean(alert.output, limit))]
    extension = " ".join(f"{k}={escape.cef_extension(v)}" for k, v in pairs)
    return f"CEF:0|{header}|{CEF_SEVERITY[alert.priority]}|{extension}"


def build_leef_message(alert: Alert, limit: int) -> str:
    rule = escape.clean(alert.rule, limit)
    header = "|".join(escape.leef_header(p) for p in (VENDOR, PRODUCT, PRODUCT_VERSION, rule))
    stamp = datetime.fromtimestamp(alert.time_ns // 1_000_000_000, UTC)
    dev_time = f"{stamp:%Y-%m-%dT%H:%M:%S}.{(alert.time_ns // 1_000_000) % 1000:03d}+0000"
    key = _key_fields(alert, limit)
    pairs = [
        ("devTime", dev_time), ("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSZ"),
        ("sev", str(LEEF_SEVERITY[alert.priority])), ("cat", escape.clean(",".join(alert.tags), limit)),
        ("identHostName", escape.clean(alert.hostname, limit)), ("priority", alert.priority.label),
        ("uuid", alert.uuid),
    ]
    renamed = {"suser": "usrName", "sproc": "proc", "spid": "pid"}
    pairs += [(renamed.get(k, k), v) for k, v in key.items()]
    lost = dropped(alert)
    if lost is not None:
        pairs.append(("droppedEvents", str(lost)))
        pairs += [(_leef_drop_key(k), str(alert.output_fields[k])) for k in DROP_FIELDS[2:]]
    pairs.append(("msg", escape.clean(alert.output, limit)))
    attributes = LEEF_DELIMITER.join(f"{k}={escape.leef_value(v, LEEF_DELIMITER)}" for k, v in pairs)
    return f"LEEF:2.0|{header}|{LEEF_DELIMITER}|{attributes}"


_DROPS = "peregrine.drops."


def _leef_drop_key(field: str) -> str:
    """peregrine.drops.ring_full -> peregrineDropsRingFull: LEEF attribute names are plain words."""
    return "peregrineDrops" + "".join(w.capitalize() for w in field.removeprefix(_DROPS).split("_"))


_MESSAGE_BUILDERS: dict[str, Callable[[Alert, int], str]] = {
    "json": build_json_message,
    "cef": build_cef_message,
    "leef": build_leef_message,
}


def build_syslog(alert: Alert, config: SyslogConfig, limit: int) -> bytes:
    """One RFC 5424 message (no frame), shrinking values until it fits ``max_message_bytes``."""
    builder = _MESSAGE_BUILDERS[config.format]
    while True:
        message = _rfc5424(alert, config, limit, builder(alert, limit))
        if len(message) <= config.max_message_bytes or limit <= 64:
            return message[: config.max_message_bytes].decode("utf-8", errors="ignore").encode()
        limit //= 2


def _rfc5424(alert: Alert, config: SyslogConfig, limit: int, msg: str) -> bytes:
    pid = alert.output_fields.get("proc.pid")
    procid = str(pid) if isinstance(pid, int) and not isinstance(pid, bool) else "-"
    params = [("rule", alert.rule), ("priority", alert.priority.label), ("uuid", alert.uuid)]
    for name, field in (("ns", "k8s.ns.name"), ("pod", "k8s.pod.name"), ("container", "container.id")):
        value = alert.output_fields.get(field)
        if value is not None:
            params.append((name, str(value)))
    sd = " ".join(f'{k}="{escape.sd_value(escape.clean(v, limit))}"' for k, v in params)
    header = (
        f"<{config.facility * 8 + int(alert.priority)}>1 {rfc3339_micros(alert.time_ns)} "
        f"{escape.syslog_token(alert.hostname, 255)} {config.app_name} {procid} {config.msgid} "
        f"[falco@{config.enterprise_id} {sd}]"
    )
    return f"{header} {msg}".encode()


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the byte length, a space, the message."""
    return b"%d %s" % (len(message), message)


class SyslogDestination:
    def __init__(self, config: SyslogConfig, value_limit: int, max_batch: int) -> None:
        self._config = config
        self._limit = value_limit
        self.max_batch = max_batch
        self._sock: socket.socket | None = None
        self._relp: RelpSession | None = None
        self._context = _tls_context(config) if config.tls else None
        self._sent: deque[tuple[float, bytes]] = deque()  # plain TCP only: (when, frames) to resend
        self._sent_bytes = 0
        self._lost = False  # the last connection ended with frames possibly unread

    def build(self, alert: Alert) -> bytes:
        message = build_syslog(alert, self._config, self._limit)
        return message if self._config.protocol == "relp" else frame(message)

    def send(self, payloads: Sequence[bytes]) -> Outcome:
        try:
            sock = self._connection()
            if self._relp is not None:
                self._relp.send(payloads)
            else:
                data = b"".join(payloads)
                if self._lost:
                    data = b"".join(frames for _, frames in self._sent) + data
                sock.settimeout(self._config.timeout_s)
                sock.sendall(data)
                _wait_acknowledged(sock, time.monotonic() + self._config.timeout_s)
                self._lost = False
                self._retain(b"".join(payloads))
        except (OSError, ssl.SSLError, RetryableError) as exc:
            self._lost = True
            self.close()
            where = f"{self._config.host}:{self._config.port}"
            reason = exc.reason if isinstance(exc, RetryableError) else f"{type(exc).__name__}: {exc}"
            raise RetryableError(f"syslog {where}: {reason}") from None
        return ACCEPTED

    def _connection(self) -> socket.socket:
        sock = self._sock
        if sock is not None:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:  # between batches a receiver never speaks: closed, closing or serverclose
                self._lost = True
                self.close()
                sock = None
        if sock is None:
            config = self._config
            raw = socket.create_connection((config.host, config.port), timeout=config.timeout_s)
            try:
                if self._context is not None:
                    raw = self._context.wrap_socket(raw, server_hostname=config.server_name or config.host)
                if config.protocol == "relp":
                    session = RelpSession(raw, config.timeout_s)
                    session.open()
                    self._relp = session
            except (OSError, ssl.SSLError, RetryableError):
                raw.close()
                raise
            sock = self._sock = raw
        return sock

    def _retain(self, frames: bytes) -> None:
        now = time.monotonic()
        self._sent.append((now, frames))
        self._sent_bytes += len(frames)
        while self._sent and (self._sent_bytes > RETAIN_BYTES or now - self._sent[0][0] > RETAIN_S):
            self._sent_bytes -= len(self._sent.popleft()[1])

    def close(self) -> None:
        sock, self._sock = self._sock, None
        relp, self._relp = self._relp, None
        if sock is None:
            return
        try:
            if relp is not None:
                relp.close()
            if isinstance(sock, ssl.SSLSocket):
                sock.settimeout(1.0)
                sock.unwrap()  # close_notify, so the receiver sees a clean end of stream
        except (OSError, ValueError):
            pass
        finally:
            sock.close()


def _wait_acknowledged(sock: socket.socket, deadline: float) -> None:
    """Return once the peer's TCP has acknowledged every byte sent (SIOCOUTQ counts the bytes not
    yet acknowledged); raise TimeoutError at the deadline, e.g. for a receiver that stopped reading."""
    pause = 0.0005
    while True:
        queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        if queued == 0:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{queued} bytes still unacknowledged by the receiver")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _tls_context(config: SyslogConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify:
        # the opt-in is `tls.verify: false`, explicit in the file; say it at every start
        log.warning("TLS certificate verification is OFF for syslog %s:%d (tls.verify: false): anyone on "
                    "the path can read and forge this destination's traffic", config.host, config.port)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if config.cert_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    return context
