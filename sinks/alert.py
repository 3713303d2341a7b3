"""The sink's view of a record on `peregrine.alerts`: the contract's `Alert`, decoded by `alerts.wire`.

One definition for the whole pipeline (`rules.alert.Alert`, written by the workers with
`alerts.wire.encode`); a record that does not decode raises `alerts.errors.AlertDecodeError` and
goes to the dead-letter topic. Every string of an alert is still attacker-controlled text that
each format escapes in `escape.py`.
"""

from __future__ import annotations

from alerts.wire import Alert, parse_time_ns
from alerts.wire import decode as decode_alert

__all__ = ["Alert", "decode_alert", "parse_time_ns"]
