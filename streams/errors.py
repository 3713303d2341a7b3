"""Errors of the detection worker, under one root.

    WorkerError
     └── ConfigError    a worker option is missing or invalid (names the flag and the variable)
"""

from __future__ import annotations


class WorkerError(Exception):
    """Root of every error the detection worker raises on purpose."""
