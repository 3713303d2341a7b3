"""Errors of the developer tools, under one root.

    DevtoolsError
     ├── KafkaError    the local broker cannot be prepared, started or reached (`devtools.localkafka`)
     └── DemoError     a stage of the demo failed (`devtools.demo`)
"""

from __future__ import annotations


class DevtoolsError(Exception):
    """Root of every error the developer tools raise on purpose."""
