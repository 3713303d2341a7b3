"""Capture files: frames round trip; damage is reported with the file and the byte offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.capture import MAGIC, CaptureWriter, read_capture
from collectors.errors import CaptureError


def test_frames_round_trip(tmp_path: Path) -> None:
    path = str(tmp_path / "c.cap")
    w = CaptureWriter(path)
    w.send("events", b"node", b"\x81\xa1v\x01", 3)
    w.send("stats", b"node", b"stats-bytes", 0)
    w.close(1.0)
    frames = list(read_capture(path))
    assert [(f.kind, f.key, f.value) for f in frames] == [("events", b"node", b"\x81\xa1v\x01"),
                                                          ("stats", b"node", b"stats-bytes")]
    assert frames[0].t_ns <= frames[1].t_ns
    assert w.delivered_events == 3 and w.delivered_batches == 1


def test_bad_header_and_bad_frames_name_file_and_offset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cap"
    bad.write_bytes(b"not a capture")
    with pytest.raises(CaptureError, match="bad.cap: not a Peregrine capture"):
        list(read_capture(str(bad)))
    wrong = tmp_path / "wrong.cap"
    wrong.write_bytes(MAGIC + b"\x93\x01\x02\x03")  # a 3-element frame
    with pytest.raises(CaptureError, match=f"bad frame at byte {len(MAGIC)}"):
        list(read_capture(str(wrong)))
    with pytest.raises(CaptureError, match="cannot read capture"):
        list(read_capture(str(tmp_path / "missing.cap")))
