"""Errors of the detection worker, under one root.

    WorkerError
     ├── ConfigError    a worker option is missing or invalid (names the flag and the variable)
     ├── StatsRefused   a stats record whose node or time may not touch the drop alerts' state
     └── DecompressionRefused  a fetched record batch that would decompress past the bound
"""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the detection worker raises on purpose."""


class DecompressionRefused(WorkerError):
    """A compressed record batch that would decompress past `streams.fetchbound`'s bound, or corrupt."""
