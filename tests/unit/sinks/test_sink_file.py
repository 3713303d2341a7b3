"""File (JSON lines, appended, fsync policy) and stdout destinations."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sinks.alert import decode_alert
from sinks.errors import RetryableError
from sinks.file import FileConfig, FileDestination, StdoutConfig, StdoutDestination


@pytest.mark.parametrize("fsync", ["always", "interval", "never"])
def test_file_appends_one_json_line_per_alert(
    tmp_path: Path, alert_doc: Callable[..., dict[str, Any]], fsync: str
) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b'{"earlier":true}\n')
    destination = FileDestination(FileConfig(path=str(path), fsync=fsync), 8192, 10)
    alerts = [decode_alert(json.dumps(alert_doc(uuid=f"u-{i}")).encode()) for i in range(3)]
    destination.send([destination.build(a) for a in alerts])
    destination.close()
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert lines[0] == {"earlier": True}
    assert [line["uuid"] for line in lines[1:]] == ["u-0", "u-1", "u-2"]


def test_an_unwritable_file_is_a_retryable_failure(
    tmp_path: Path, alert_doc: Callable[..., dict[str, Any]]
) -> None:
    destination = FileDestination(FileConfig(path=str(tmp_path / "missing-dir" / "a.jsonl")), 8192, 10)
    with pytest.raises(RetryableError, match="No such file"):
        destination.send([destination.build(decode_alert(json.dumps(alert_doc()).encode()))])


def test_stdout_writes_json_lines(alert_doc: Callable[..., dict[str, Any]]) -> None:
    stream = io.BytesIO()
    destination = StdoutDestination(StdoutConfig(), 8192, 10, stream=stream)
    destination.send([destination.build(decode_alert(json.dumps(alert_doc()).encode()))])
    assert json.loads(stream.getvalue()) == alert_doc()
