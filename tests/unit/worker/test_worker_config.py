"""WorkerConfig from flags and environment: precedence, validation, secrets never printed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rules.interest_wire import key_of
from streams.config import ConfigError, from_args


def test_defaults_and_topic_names() -> None:
    c = from_args(["--rules", "r.yaml"], env={})
    assert c.bootstrap == ("127.0.0.1:9092",)
    assert c.rules_files == (Path("r.yaml"),)
    assert c.guarantee == "exactly_once" and c.exactly_once
    assert (c.topics.events, c.topics.stats, c.topics.alerts, c.topics.dlq, c.topics.k8s) == (
        "peregrine.events", "peregrine.stats", "peregrine.alerts", "peregrine.events.dlq", "peregrine.k8s"
    )


def test_flags_win_over_environment() -> None:
    env = {
        "PEREGRINE_BOOTSTRAP_SERVERS": "a:1,b:2",
        "PEREGRINE_RULES": "x.yaml:y.yaml",
        "PEREGRINE_PARTITIONS": "24",
    }
    c = from_args([], env=env)
    assert c.bootstrap == ("a:1", "b:2") and c.rules_files == (Path("x.yaml"), Path("y.yaml"))
    assert c.partitions == 24
    c = from_args(["--bootstrap", "c:3", "--partitions", "6", "--rules", "z.yaml"], env=env)
    assert c.bootstrap == ("c:3",) and c.partitions == 6 and c.rules_files == (Path("z.yaml"),)


def test_rules_are_required() -> None:
    with pytest.raises(ConfigError, match="--rules"):
        from_args([], env={})


def test_sasl_password_comes_from_the_environment_and_never_prints() -> None:
    argv = ["--rules", "r", "--security-protocol", "SASL_SSL", "--sasl-username", "worker",
            "--sasl-mechanism", "SCRAM-SHA-512"]
    with pytest.raises(ConfigError, match="PEREGRINE_KAFKA_SASL_PASSWORD"):
        from_args(argv, env={})
    c = from_args(argv, env={"PEREGRINE_KAFKA_SASL_PASSWORD": "hunter2"})
    assert c.security.sasl_password == "hunter2"
    assert "hunter2" not in repr(c) and "hunter2" not in str(c.security)


def test_invalid_numbers_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        from_args(["--rules", "r"], env={"PEREGRINE_PARTITIONS": "many"})
    with pytest.raises(ConfigError):
        from_args(["--rules", "r", "--partitions", "0"], env={})


def test_worker_exits_2_on_a_bad_rules_file_before_touching_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streams.worker import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: x\n  condition: evt.type = execve\n")
    assert main(["--rules", str(bad), "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the rules" in err and "bad.yaml:1" in err


def test_rule_matching_is_first_unless_a_flag_or_the_environment_says_all() -> None:
    c = from_args(["--rules", "r"], env={})
    assert c.rule_matching == "first" and not c.all_matches
    c = from_args(["--rules", "r"], env={"PEREGRINE_RULE_MATCHING": "all"})
    assert c.rule_matching == "all" and c.all_matches
    c = from_args(["--rules", "r", "--rule-matching", "first"], env={"PEREGRINE_RULE_MATCHING": "all"})
    assert not c.all_matches


def test_an_unknown_rule_matching_is_a_config_error_naming_flag_and_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ConfigError, match=r"--rule-matching \(PEREGRINE_RULE_MATCHING\).*'every'"):
        from_args(["--rules", "r"], env={"PEREGRINE_RULE_MATCHING": "every"})
    with pytest.raises(SystemExit):
        from_args(["--rules", "r", "--rule-matching", "every"], env={})
    assert "--rule-matching" in capsys.readouterr().err


def test_rule_cost_sampling_from_flag_or_environment_and_never_negative() -> None:
    assert from_args(["--rules", "r"], env={}).rule_cost_every == 4096
    assert from_args(["--rules", "r"], env={"PEREGRINE_RULE_COST_EVERY": "0"}).rule_cost_every == 0
    c = from_args(["--rules", "r", "--rule-cost-every", "8"], env={"PEREGRINE_RULE_COST_EVERY": "0"})
    assert c.rule_cost_every == 8
    with pytest.raises(ConfigError, match=r"--rule-cost-every \(PEREGRINE_RULE_COST_EVERY\)"):
        from_args(["--rules", "r", "--rule-cost-every", "-1"], env={})


def test_new_container_wait_from_flag_or_environment_bounded() -> None:
    assert from_args(["--rules", "r"], env={}).k8s_wait_new == 3.0
    assert from_args(["--rules", "r"], env={"PEREGRINE_K8S_WAIT_NEW": "0"}).k8s_wait_new == 0.0
    c = from_args(["--rules", "r", "--k8s-wait-new", "0.5"], env={"PEREGRINE_K8S_WAIT_NEW": "0"})
    assert c.k8s_wait_new == 0.5
    for bad in ("-1", "31"):
        with pytest.raises(ConfigError, match=r"--k8s-wait-new \(PEREGRINE_K8S_WAIT_NEW\)"):
            from_args(["--rules", "r", "--k8s-wait-new", bad], env={})
    with pytest.raises(ConfigError, match="invalid number"):
        from_args(["--rules", "r"], env={"PEREGRINE_K8S_WAIT_NEW": "soon"})


def test_control_grace_from_flag_or_environment_and_positive() -> None:
    assert from_args(["--rules", "r"], env={}).control_grace == 120.0
    assert from_args(["--rules", "r"], env={"PEREGRINE_CONTROL_GRACE": "30"}).control_grace == 30.0
    flagged = from_args(["--rules", "r", "--control-grace", "5"], env={"PEREGRINE_CONTROL_GRACE": "30"})
    assert flagged.control_grace == 5
    with pytest.raises(ConfigError, match=r"--control-grace \(PEREGRINE_CONTROL_GRACE\)"):
        from_args(["--rules", "r", "--control-grace", "0"], env={})


def test_each_process_is_a_replica_a_control_key_can_carry() -> None:
    """Its host (a pod's name) and process id: two workers on one host have two records."""
    replica = from_args(["--rules", "r"], env={}).replica
    assert replica.endswith(f"-{os.getpid()}") and key_of("peregrine-worker", replica)
