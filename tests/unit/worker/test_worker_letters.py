"""The dead-letter budget: per node, then for the worker, then a count (issue #16, item 6)."""

from __future__ import annotations

from streams.letters import LetterBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_node_gets_its_burst_then_its_rate_and_the_next_letter_counts_what_was_refused() -> None:
    clock = Clock()
    budget = LetterBudget(rate_per_s=1, burst=3, clock=clock)
    assert [budget.take(b"n") for _ in range(5)] == [0, 0, 0, None, None]
    clock.now = 1.0
    assert budget.take(b"n") == 2
    assert budget.take(b"n") is None


def test_one_nodes_garbage_does_not_spend_anothers_budget() -> None:
    budget = LetterBudget(rate_per_s=1, burst=2, clock=Clock())
    for _ in range(100):
        budget.take(b"noisy")
    assert budget.take(b"quiet") == 0


def test_rotating_keys_meets_the_workers_budget() -> None:
    budget = LetterBudget(rate_per_s=1, burst=2, total_rate_per_s=1, total_burst=10, clock=Clock())
    written = [budget.take(f"k{i}".encode()) for i in range(50)]
    assert sum(w is not None for w in written) == 10


def test_the_table_is_bounded_and_keys_are_cut() -> None:
    budget = LetterBudget(max_nodes=5, clock=Clock())
    for i in range(50):
        budget.take(b"x" * 1_000_000 + str(i).encode())  # all cut to the same 256 bytes
        budget.take(f"k{i}".encode())
    assert len(budget) == 5
