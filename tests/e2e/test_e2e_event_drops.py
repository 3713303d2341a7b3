"""The collector losing events reaches the receivers as Falco's "syscall event drop" alert (root).

`peregrine collect` runs with a 64 KiB ring and openat only (as the collector's own overflow test
does) while a child opens a file as fast as it can: the ring fills, the collector's per-second
stats on `peregrine.stats` carry the drops, the worker applies Falco's rule (drop ratio over 0.1
in a second, at most one alert per node per 30 s) and the sink delivers the internal alert to the
Slack stand-in, rsyslogd and a JSON-lines file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_pipeline import Arrivals, Pipeline, rule_files, slack_destination, syslog_destination
from receivers import Rsyslog

pytestmark = [
    pytest.mark.e2e, pytest.mark.root, pytest.mark.kafka,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

RULE = "Falco internal: syscall event drop"
DEADLINE_S = 120.0  # correctness only (the machine is shared)
STORM = """
import os, time
end = time.time() + 4
while time.time() < end:
    for _ in range(1000):
        os.close(os.open("/etc/hostname", os.O_RDONLY))
"""


def test_ring_buffer_overflow_raises_falcos_syscall_event_drop_alert_at_the_receivers(
    pipeline: Pipeline, receiver: Any, rsyslog: Rsyslog, falco_rules_dir: Path, tmp_path: Path
) -> None:
    node = f"e2e-drops-{pipeline.setup.tag}"
    slack = receiver("slack")
    slack_entry, env = slack_destination(slack)
    alerts_file = tmp_path / "alerts.jsonl"
    file_entry = {"name": "file", "type": "file", "path": str(alerts_file)}
    pipeline.start_worker(rule_files(falco_rules_dir))
    pipeline.start_sink([slack_entry, syslog_destination(rsyslog), file_entry], env)
    pipeline.start_collector(node, [], "--event-types", "openat", "--ring-kb", "64")
    pipeline.wait_groups_stable()

    subprocess.run([sys.executable, "-c", STORM], check=True, timeout=60)

    arrivals = Arrivals(slack, rsyslog)

    def drop_alerts(found: dict[str, Any]) -> list[Any]:
        return [d for d in found.values() if d.rule == RULE and d.hostname == node]

    arrivals.wait(lambda a: bool(drop_alerts(a.at_slack) and drop_alerts(a.at_syslog)), DEADLINE_S,
                  pipeline.describe)
    arrivals.settle(2.0)
    at_slack, at_syslog = drop_alerts(arrivals.at_slack), drop_alerts(arrivals.at_syslog)
    assert len(at_slack) == 1, "Falco's token bucket: one drop alert per node per 30 s"
    assert {d.uuid for d in at_slack} == {d.uuid for d in at_syslog}
    assert at_slack[0].text == at_syslog[0].text

    docs = [json.loads(line) for line in alerts_file.read_text().splitlines()]
    [doc] = [d for d in docs if d["rule"] == RULE and d["hostname"] == node]
    assert doc["uuid"] == at_slack[0].uuid
    assert (doc["priority"], doc["source"]) == ("Debug", "internal")
    fields = doc["output_fields"]
    assert int(fields["n_drops"]) > 0 and int(fields["n_drops_buffer_total"]) > 0
    assert int(fields["n_drops"]) / int(fields["n_evts"]) > 0.1
    assert doc["output"] == f"{RULE}. {fields['n_drops']} system calls dropped in last second."
    assert at_slack[0].text == doc["output"]
