"""Which node a record speaks for: the envelope's node name, checked before the worker keys anything by it.

Any collector can write any node name, so the name is attacker-chosen: it keys the worker's per-node
state (`streams.detect.SeqTracker`, `streams.drops.DropMonitor`), becomes the alert's ``hostname``
(a Loki label) and appears in log lines. A Kubernetes node name is a DNS subdomain of at most 253
characters; anything else (a newline, a megabyte) is refused and the record dead-lettered.
"""

from __future__ import annotations

import re
from typing import Final

from streams.logsafe import shown

NODE_NAME: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
MAX_BOOT_ID: Final = 64  # a boot id is a 36-character UUID


def node_problem(node: str, boot_id: str = "") -> str | None:
    """Why the node name (and boot id) may not key the worker's state, or None when they may."""
    if not NODE_NAME.fullmatch(node):
        return f"node {shown(node, 64)} is not a DNS name of at most 253 characters"
    if len(boot_id) > MAX_BOOT_ID:
        return f"boot_id of {len(boot_id)} characters > {MAX_BOOT_ID}"
    return None
