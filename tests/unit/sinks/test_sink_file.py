"""File (JSON lines, appended, fsync policy) and stdout destinations."""

from __future__ import annotations

import io
import json
import os
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


def _alert(alert_doc: Callable[..., dict[str, Any]], uuid: str) -> Any:
    return decode_alert(json.dumps(alert_doc(uuid=uuid)).encode())


def _uuids(path: Path) -> list[str]:
    return [json.loads(line)["uuid"] for line in path.read_bytes().splitlines()]


def test_a_planted_symlink_is_refused_not_followed(
    tmp_path: Path, alert_doc: Callable[..., dict[str, Any]]
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"untouched\n")
    link = tmp_path / "alerts.jsonl"
    link.symlink_to(victim)
    destination = FileDestination(FileConfig(path=str(link)), 8192, 10)
    with pytest.raises(RetryableError, match="symbolic link"):
        destination.send([destination.build(_alert(alert_doc, "u-0"))])
    assert victim.read_bytes() == b"untouched\n"


def test_a_new_file_is_private_by_default_and_mode_is_configurable(
    tmp_path: Path, alert_doc: Callable[..., dict[str, Any]]
) -> None:
    for name, config in (("a", FileConfig(path=str(tmp_path / "a"))),
                         ("b", FileConfig(path=str(tmp_path / "b"), mode=0o640))):
        destination = FileDestination(config, 8192, 10)
        destination.send([destination.build(_alert(alert_doc, "u-0"))])
        destination.close()
        assert (tmp_path / name).stat().st_mode & 0o777 == (0o600 if name == "a" else 0o640)


def test_a_non_regular_file_is_refused(tmp_path: Path, alert_doc: Callable[..., dict[str, Any]]) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        destination = FileDestination(FileConfig(path=str(fifo)), 8192, 10)
        with pytest.raises(RetryableError, match="not a regular file"):
            destination.send([destination.build(_alert(alert_doc, "u-0"))])
    finally:
        os.close(reader)


def test_after_a_rename_rotation_the_next_batch_goes_to_a_new_file(
    tmp_path: Path, alert_doc: Callable[..., dict[str, Any]]
) -> None:
    path = tmp_path / "alerts.jsonl"
    destination = FileDestination(FileConfig(path=str(path)), 8192, 10)
    destination.send([destination.build(_alert(alert_doc, "u-0"))])
    path.rename(tmp_path / "alerts.jsonl.1")
    destination.send([destination.build(_alert(alert_doc, "u-1"))])
    path.unlink()
    destination.send([destination.build(_alert(alert_doc, "u-2"))])
    destination.close()
    assert _uuids(tmp_path / "alerts.jsonl.1") == ["u-0"]
    assert _uuids(path) == ["u-2"]


def test_an_unquoted_or_bad_mode_is_a_configuration_error() -> None:
    from sinks.errors import ConfigError
    from sinks.file import parse
    from sinks.options import Options

    for bad in (384, "rw", "0o1777", "9"):
        with pytest.raises(ConfigError, match="mode"):
            parse(Options({"path": "/x", "mode": bad}, "destinations[0]", "sinks.yaml", {}))
    assert parse(Options({"path": "/x", "mode": "0640"}, "destinations[0]", "sinks.yaml", {})).mode == 0o640
