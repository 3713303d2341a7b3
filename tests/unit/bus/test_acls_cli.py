"""`peregrine kafka acls` without --apply: the role's grants as kafka-acls.sh commands, from bus.acls
only; a bad role or principal is refused with a message naming it."""

from __future__ import annotations

import shlex

import pytest

from bus import acls, acls_cli
from bus.errors import ConnectionConfigError


def test_prints_one_kafka_acls_command_per_grant(capsys: pytest.CaptureFixture[str]) -> None:
    assert acls_cli.main(["--role", "collector", "--principal", "User:node", "--bootstrap", "k:9092"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(acls.bindings("collector")) == 7
    words = [shlex.split(line) for line in lines]
    assert all(w[:3] == ["kafka-acls.sh", "--bootstrap-server", "k:9092"] for w in words)
    assert {(w[w.index("--operation") + 1], w[w.index("--group") + 1]) for w in words if "--group" in w} == {
        ("Describe", acls.CONTROL_READER_GROUP)}
    assert {(w[w.index("--operation") + 1], w[w.index("--topic") + 1]) for w in words if "--topic" in w} == {
        ("Write", "peregrine.events"), ("Describe", "peregrine.events"),
        ("Write", "peregrine.stats"), ("Describe", "peregrine.stats"),
        ("Read", "peregrine.control"), ("Describe", "peregrine.control"),
    }  # fmt: skip


def test_a_principal_must_name_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    assert acls_cli.main(["--role", "sink", "--principal", "sink\nforged", "--bootstrap", "k:9092"]) == 2
    err = capsys.readouterr().err
    assert "must start with 'User:'" in err and "\nforged" not in err


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ConnectionConfigError, match="unknown role 'admin'"):
        acls.bindings("admin")
