"""The Ruleset: first match in definition order, all matches, batches, enabling by priority, and
the blog-scenario detections of Falco's own rules on realistic records."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import rules
from benchmarks.workload import build_event, make_events
from rules import CompileError, Priority
from rules import record as R
from rules.collect import load_sources
from rules.ruleset import Ruleset, compile_rules

CONTAINER = {
    "image_repo": "docker.io/library/mysql", "image_tag": "8", "name": "db", "ns": "default",
    "pod_name": "mysql-db-0",
}  # fmt: skip


def ruleset_of(items: list[dict[str, object]], **options: object) -> Ruleset:
    full = [{"desc": "d", "output": "o", "priority": "WARNING", **item} for item in items]
    return compile_rules(load_sources([("t.yaml", yaml.safe_dump(full, sort_keys=False))]), **options)  # type: ignore[arg-type]


TWO = [
    {"rule": "first", "condition": "evt.type = execve and proc.name startswith ba"},
    {"rule": "second", "condition": "evt.type = execve and proc.name = bash", "priority": "CRITICAL"},
    {"rule": "third", "condition": "evt.type = openat"},
]


def test_first_match_wins_in_definition_order() -> None:
    ruleset = ruleset_of(TWO)
    rule = ruleset.match(build_event("execve"))
    assert rule is not None and rule.name == "first"
    only_second = ruleset.match(build_event("execve", proc={"name": "bash"}))
    assert only_second is not None and only_second.name == "first"
    assert ruleset.match(build_event("execve", proc={"name": "zsh"})) is None


def test_match_all_lists_every_match_in_order() -> None:
    ruleset = ruleset_of(TWO)
    assert [r.name for r in ruleset.match_all(build_event("execve"))] == ["first", "second"]
    assert ruleset.match_all(build_event("connect")) == []


def test_evaluate_pairs_events_with_their_rule() -> None:
    ruleset = ruleset_of(TWO)
    a, b, c = build_event("execve"), build_event("connect"), build_event("openat")
    assert [(ev is x, r.name) for (ev, r), x in zip(ruleset.evaluate([a, b, c]), [a, c], strict=True)] == [
        (True, "first"), (True, "third")
    ]


def test_all_matches_option_reports_every_rule() -> None:
    ruleset = ruleset_of(TWO, all_matches=True)
    assert [r.name for _, r in ruleset.evaluate([build_event("execve")])] == ["first", "second"]


def test_min_priority_and_disabled_rules_are_not_evaluated() -> None:
    items = [*TWO, {"rule": "off", "condition": "evt.type = connect", "enabled": False}]
    ruleset = ruleset_of(items, min_priority=Priority.ERROR)
    assert [r.name for r in ruleset.rules] == ["second"]
    assert ruleset.event_type_names == {"execve"}


def test_disabled_rules_are_still_compiled() -> None:
    with pytest.raises(CompileError):
        ruleset_of([{"rule": "off", "condition": "proc.nme = x", "enabled": False}])


def test_event_types_unknown_to_every_rule_cost_nothing() -> None:
    ruleset = ruleset_of(TWO)
    assert ruleset.match([999, 0, 0, None, 0, [], None, 1]) is None


def test_a_generic_syscall_rule_is_indexed_on_its_own_type_only() -> None:
    """The event-type algebra gives `evt.type = open_tree` libs' whole generic pair (every generic
    record type); the condition compiled for the others is false, so only open_tree keeps the
    rule and a collector given it traces open_tree alone."""
    ruleset = ruleset_of([
        {"rule": "tree", "condition": "evt.type = open_tree"},
        {"rule": "clock", "condition": "evt.type = clock_gettime"},
        {"rule": "read", "condition": "evt.type = read"},  # an event of its own, no record type: no bucket
    ])
    assert ruleset.event_type_names == {"open_tree", "clock_gettime"}


def test_generic_types_a_rule_compiles_to_alike_share_one_bucket() -> None:
    """A rule with no evt.type restriction is evaluated on every generic type, as in Falco, but
    compiled once for all of them (rules.shared_types); a generic type another rule names keeps a
    bucket of its own, with both rules in definition order."""
    ruleset = ruleset_of([
        {"rule": "any", "condition": "proc.name = nc and not evt.type in (openat, execve)"},
        {"rule": "persona", "condition": "evt.type = personality"},
        {"rule": "time", "condition": "evt.type startswith time and proc.name = date"},
    ], all_matches=True)
    generic = {R.EVENT_TYPES[i] for i in R.GENERIC_TYPE_IDS}
    assert generic <= ruleset.event_type_names and "openat" not in ruleset.event_type_names
    source = ruleset.source()
    # 61 own types less openat and execve, one shared generic bucket, personality, and the nine
    # types `startswith time` holds on (time, timer_create, timerfd_settime, times, ...)
    timed = {n for n in generic if n.startswith("time")}
    assert len(timed) == 9 and source.count("def _first_") == 59 + 1 + 1 + 9
    nc, date = build_event("execve", proc={"name": "nc"}), build_event("execve", proc={"name": "date"})
    events = []
    for name, proc in (("syncfs", nc), ("personality", nc), ("personality", date), ("timer_create", date),
                       ("timer_create", nc), ("getpid", date)):  # fmt: skip
        ev = list(proc)
        ev[R.EV_TYPE], ev[R.EV_RES], ev[R.EV_ARGS], ev[R.EV_FD] = R.EVENT_TYPE_IDS[name], None, [0, 0], None
        events.append(ev)
    expected = [["any"], ["any", "persona"], ["persona"], ["time"], ["any"], []]
    assert [[r.name for r in ruleset.match_all(ev)] for ev in events] == expected
    batch = [(R.EVENT_TYPES[ev[0]], rule.name) for ev, rule in ruleset.evaluate(events)]
    pairs = zip(events, expected, strict=True)
    assert batch == [(R.EVENT_TYPES[ev[0]], name) for ev, names in pairs for name in names]


def test_ruleset_is_immutable() -> None:
    ruleset = ruleset_of(TWO)
    with pytest.raises(AttributeError):
        ruleset.rules = ()  # type: ignore[misc]


def test_compiled_rule_carries_its_metadata() -> None:
    item = {"rule": "r", "condition": "evt.type = execve", "tags": ["z", "a"], "priority": "NOTICE"}
    rule = ruleset_of([item]).rules[0]
    assert (rule.priority, rule.tags, rule.source) == (Priority.NOTICE, ("a", "z"), "syscall")
    assert rule.event_types == {"execve"}


# --- Falco's own rules on the blog scenarios (reference section 9) -----------------------------
@pytest.fixture(scope="module")
def falco(falco_rules_dir: Path) -> Ruleset:
    names = {"10.96.0.1": "kubernetes.default.svc.cluster.local"}
    files = [falco_rules_dir / f for f in ("falco_rules.yaml", "falco-incubating_rules.yaml")]
    return rules.load(files, ip_names=names, all_matches=True)


def names(ruleset: Ruleset, ev: list[object]) -> list[str]:
    return [r.name for r in ruleset.match_all(ev)]


def test_terminal_shell_in_container(falco: Ruleset) -> None:
    shell = {"name": "bash", "container": CONTAINER, "parent": {"name": "runc"}}
    ev = build_event("execve", proc={**shell, "tty": 34816})
    assert "Terminal shell in container" in names(falco, ev)
    no_tty = build_event("execve", proc={**shell, "tty": 0})
    assert "Terminal shell in container" not in names(falco, no_tty)


def test_contact_k8s_api_server_from_container(falco: Ruleset) -> None:
    fd = {"typechar": "4", "cip": "10.244.0.7", "cport": 41000, "sip": "10.96.0.1", "sport": 443}
    ev = build_event("connect", proc={"name": "curl", "container": CONTAINER}, fd=fd)
    assert "Contact K8S API Server From Container" in names(falco, ev)
    in_kube_system = {**CONTAINER, "ns": "kube-system"}
    system = build_event("connect", proc={"name": "curl", "container": in_kube_system}, fd=fd)
    assert "Contact K8S API Server From Container" not in names(falco, system)


def test_change_thread_namespace(falco: Ruleset) -> None:
    ev = build_event("setns", proc={"name": "evil", "parent": {"name": "bash"}})
    assert "Change thread namespace" in names(falco, ev)
    runc = build_event("setns", proc={"name": "runc:[2:INIT]", "parent": {"name": "containerd-shim"}})
    assert "Change thread namespace" not in names(falco, runc)


def test_package_management_in_container(falco: Ruleset) -> None:
    ev = build_event("execve", proc={"name": "apt-get", "container": CONTAINER, "parent": {"name": "bash"}})
    assert "Launch Package Management Process in Container" in names(falco, ev)
    under_apt = {"name": "dpkg", "container": CONTAINER, "parent": {"name": "apt-get"}}
    nested = build_event("execve", proc=under_apt)
    assert "Launch Package Management Process in Container" not in names(falco, nested)


def test_realistic_mix_matches_almost_nothing(falco: Ruleset) -> None:
    events = make_events(5000, seed=3)
    assert len(falco.evaluate(events)) < 50


def test_ip_names_mapping_is_read_live() -> None:
    names: dict[str, str] = {}
    ruleset = ruleset_of([{"rule": "api", "condition": "evt.type = connect and fd.sip.name = api.local"}],
                         ip_names=names)
    ev = build_event("connect", fd={"typechar": "4", "cip": "10.0.0.2", "sip": "10.96.0.1"})
    assert ruleset.match(ev) is None
    names["10.96.0.1"] = "api.local"
    assert ruleset.match(ev) is not None


def test_load_takes_one_path_or_several(falco_rules_dir: Path) -> None:
    one = rules.load(falco_rules_dir / "falco_rules.yaml")
    assert len(one.rules) == len(rules.load([falco_rules_dir / "falco_rules.yaml"]).rules) == 25


def test_exception_fields_must_be_filter_fields() -> None:
    exceptions = [{"name": "a", "fields": ["proc.name"]}]
    good = {"rule": "r", "condition": "evt.type = open", "exceptions": exceptions}
    assert ruleset_of([good]).rules[0].name == "r"
    bad = {**good, "exceptions": [{"name": "a", "fields": ["not.exist"]}]}
    with pytest.raises(CompileError) as info:
        ruleset_of([bad])
    assert "'not.exist' is not a supported filter field" in info.value.message


def _warnings_of(*conditions: str) -> list[str]:
    docs = [{"rule": f"r{i}", "desc": "d", "condition": c, "output": "o", "priority": "INFO"}
            for i, c in enumerate(conditions)]  # fmt: skip
    ruleset = compile_rules(load_sources([("u.yaml", yaml.safe_dump(docs))]))
    return [w.render() for w in ruleset.warnings if w.code == "PEREGRINE_UNCAPTURED_EVTTYPE"]


def test_a_rule_naming_an_event_type_the_collector_does_not_capture_says_so() -> None:
    """Falco captures every syscall, so its users' rules may name any: one Peregrine does not capture
    would never fire, silently, without this warning naming the rule and its line."""
    never, partly = _warnings_of("evt.type = read", "evt.type in (openat, mmap)")
    assert never == (
        "u.yaml:1: rule 'r0': warning PEREGRINE_UNCAPTURED_EVTTYPE: evt.type read not captured "
        "by Peregrine: the rule can never match"
    )
    assert partly.endswith("evt.type mmap not captured by Peregrine: it matches openat only")
    assert _warnings_of("evt.type = openat", "evt.type != openat", "proc.name = x") == []
    # every x86_64 syscall libs sends as its generic event has a record type: no warning
    assert _warnings_of("evt.type in (personality, syncfs)", "evt.type = kexec_load") == []


def test_falcos_rules_files_load_without_that_warning(falco_rules_dir: Path) -> None:
    files = ["falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml"]
    ruleset = rules.load([str(falco_rules_dir / f) for f in files])
    assert [w for w in ruleset.warnings if w.code == "PEREGRINE_UNCAPTURED_EVTTYPE"] == []
