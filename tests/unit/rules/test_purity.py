"""Importing and using the rule engine loads none of the pipeline's heavy clients."""

import subprocess
import sys

HEAVY = ("faust", "aiokafka", "confluent_kafka", "bcc", "kubernetes", "msgpack", "opentelemetry")


def test_rules_imports_no_pipeline_client() -> None:
    code = (
        "import sys, rules, rules.ruleset, rules.alert, rules.output;"
        f"print(','.join(m for m in {HEAVY!r} "
        "if m in sys.modules or any(k.startswith(m + '.') for k in sys.modules)))"
    )
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == ""
