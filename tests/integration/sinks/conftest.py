"""Fixtures of the sink integration tests: HTTP stand-in receivers and a real rsyslogd.

`rsyslog` starts the Debian rsyslogd (`receivers.serve_rsyslog`) with its own configuration (``-n -f
<conf> -i <pidfile>``): imtcp on two unprivileged 127.0.0.1 ports, one plain and one TLS (gtls
driver, a throwaway CA and server certificate made with openssl), octet-counted framing (imtcp's
default), and for each listener two files in a temporary directory: the raw RFC 5424 message
(``%rawmsg%``) and rsyslog's own parse of it as JSON (pri, version, timestamp, hostname, app-name,
procid, msgid, structured data, msg), so tests compare field by field what a real receiver
understood. It loads no imuxsock and no imklog: the system's rsyslog and /dev/log are never touched.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from receivers import Receiver, Rsyslog, serve_rsyslog

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


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    """A real rsyslogd listening on RFC 6587 TCP, RFC 5425 TLS and RELP, writing what it receives.
    `Rsyslog.kill` and `Rsyslog.start` let a test kill it mid-stream and bring it back."""
    yield from serve_rsyslog(tmp_path, "127.0.0.1")
