"""What the worker's per-rule cost sampling (`streams.rulecost`) costs the rule engine.

Evaluates `benchmarks.workload` events in 500-event batches with Falco's stable + incubating rules,
as `bench_rules` does, once plain and once with `RuleCosts.observe` after every batch (sampling
every `--every`-th batch, the worker's default 128), alternating run by run in one process. Reports
events/s of CPU time with sampling and the ratio to the plain engine (1.0 = free).

    python -m benchmarks.bench_rulecost [--events 200000] [--runs 7] [--every 128]
"""

from __future__ import annotations

import argparse
import statistics

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import rules
from benchmarks.bench_rules import BATCH, FILES, RULES_DIR
from benchmarks.results import cpu_rate, record
from benchmarks.workload import make_events
from rules.collect import load_files
from rules.profile import RuleProfiler
from streams.rulecost import RuleCosts, RuleCounters, RuleTotals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--every", type=int, default=128)
    args = parser.parse_args()

    paths = [RULES_DIR / f for f in FILES]
    names = {"10.96.0.1": "kubernetes.default.svc.cluster.local"}
    ruleset = rules.load(paths, ip_names=names)
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    counters = RuleCounters(totals=RuleTotals(), alerts=meter.create_counter("alerts"))
    costs = RuleCosts(lambda: RuleProfiler(load_files(paths), ip_names=names), counters, every=args.every)
    costs.rebuild()
    events = make_events(args.events, seed=1)
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    n = len(events)

    def plain() -> int:
        for batch in batches:
            ruleset.evaluate(batch)
        return n

    def sampled() -> int:
        observe = costs.observe
        for batch in batches:
            ruleset.evaluate(batch)
            observe(batch)
        return n

    plain(), sampled()  # warm-up (gate memos)
    base, with_costs = [], []
    for _ in range(args.runs):
        base.append(cpu_rate(plain))
        with_costs.append(cpu_rate(sampled))
    ratio = statistics.median(s / b for s, b in zip(with_costs, base, strict=True))
    record(
        f"rules evaluate + per-rule cost sampling every {args.every} batches (256 events each)",
        f"{statistics.median(with_costs):,.0f} events/s per core (CPU time)",
        f"the same engine without sampling, {statistics.median(base):,.0f} events/s per core",
        ratio,
        args.runs,
    )


if __name__ == "__main__":
    main()
