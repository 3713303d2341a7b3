"""Errors of the collector package, under one root.

    CollectorError
    ├── PreflightError   the machine cannot run the probe (not root, no tracefs, headers, BTF)
    ├── BtfError         a kernel struct or member the probe reads is missing from BTF
    ├── ProbeError       the probe did not compile, load or attach
    ├── CaptureError     a capture file cannot be read or written (path and offset in the message)
    ├── WireError        an event batch does not decode (`collectors.wire`; also a ValueError)
    ├── StatsError       a stats message does not decode (`collectors.stats`; also a ValueError)
    └── DecodeError      a raw probe record shorter than its header (`collectors.decode`; also a ValueError)

This module imports nothing, so consumers of the wire formats (workers) get the root without the
collector's dependencies.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Root of every error the collector raises on purpose."""


class PreflightError(CollectorError):
    """The machine lacks something the probe needs; the collector refuses to start."""


class BtfError(CollectorError):
    """A struct or member needed by the probe is not in the kernel's BTF."""


class ProbeError(CollectorError):
    """Compiling, loading or attaching the eBPF program failed."""


class CaptureError(CollectorError):
    """A capture file is malformed or cannot be written."""
