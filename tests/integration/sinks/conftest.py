"""Fixtures of the sink integration tests: HTTP stand-in receivers and a real rsyslogd.

`rsyslog` starts the Debian rsyslogd with its own configuration (``-n -f <conf> -i <pidfile>``):
imtcp on two unprivileged 127.0.0.1 ports, one plain and one TLS (gtls driver, a throwaway CA and
server certificate made with openssl), octet-counted framing (imtcp's default), and for each
listener two files in a temporary directory: the raw RFC 5424 message (``%rawmsg%``) and
rsyslog's own parse of it as JSON (pri, version, timestamp, hostname, app-name, procid, msgid,
structured data, msg), so tests compare field by field what a real receiver understood. It loads
no imuxsock and no imklog: the system's rsyslog and /dev/log are never touched.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from receivers import Receiver, Rsyslog

SAMPLE = json.loads((Path(__file__).parents[2] / "unit" / "sinks" / "alert_sample.json").read_text())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``outage_s``: 5 s by default; the 60 s outage of issue 7 when e2e tests are selected."""
    if "outage_s" in metafunc.fixturenames:
        params = [pytest.param(5.0, id="5s")]
        if "e2e" in str(metafunc.config.option.markexpr or ""):
            params.append(pytest.param(60.0, id="60s", marks=pytest.mark.e2e))
        metafunc.parametrize("outage_s", params)


@pytest.fixture
def alert_doc() -> Callable[..., dict[str, Any]]:
    """``alert_doc(uuid=..., output=...)``: the sample Falco alert with fields replaced."""

    def make(**changes: Any) -> dict[str, Any]:
        doc = copy.deepcopy(SAMPLE)
        doc.update(changes)
        return doc

    return make


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """``receiver("elasticsearch")``: a started stand-in receiver, stopped after the test."""
    started: list[Receiver] = []

    def make(kind: str, **options: Any) -> Receiver:
        r = Receiver(kind, **options).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
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
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="tcp")
input(type="imrelp" address="127.0.0.1" port="{relp}" ruleset="relp")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"""


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    """A real rsyslogd listening on RFC 6587 TCP, RFC 5425 TLS and RELP, writing what it receives.
    `Rsyslog.kill` and `Rsyslog.start` let a test kill it mid-stream and bring it back."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(binary).exists():
        pytest.fail("rsyslogd not installed: run scripts/setup (it installs rsyslog, gnutls and relp)")
    work = tmp_path / "work"
    work.mkdir()
    ca, cert, key = _certificates(tmp_path)
    tcp, tls, relp = _free_port(), _free_port(), _free_port()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        _CONFIG.format(work=work, ca=ca, cert=cert, key=key, dir=tmp_path, tcp=tcp, tls=tls, relp=relp)
    )
    log = (tmp_path / "rsyslogd.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [binary, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_listening(process, [tcp, tls, relp], tmp_path / "rsyslogd.log")
        return process

    server = Rsyslog(tmp_path, tcp, tls, ca, relp, start)
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


def _wait_listening(process: subprocess.Popen[bytes], ports: list[int], log: Path) -> None:
    deadline = time.monotonic() + 15
    pending = list(ports)
    while pending and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rsyslogd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", pending[0]), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"rsyslogd did not listen on {pending}: {log.read_text()}")
