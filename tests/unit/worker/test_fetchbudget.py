"""`streams.fetchbudget.FetchBudget`: bytes of handed-on messages count until the message is freed;
a hold over the limit waits for that, and a message alone over the limit still passes."""

from __future__ import annotations

import asyncio
import gc

from streams.fetchbudget import FetchBudget


class _Message:
    """Stands for a Faust message: only its lifetime matters here."""


def test_a_hold_over_the_limit_waits_until_earlier_messages_are_freed() -> None:
    async def scenario() -> None:
        budget = FetchBudget(100)
        first = _Message()
        await budget.hold(first, 60)
        assert budget.held == 60
        second = asyncio.ensure_future(budget.hold(_Message(), 60))
        await asyncio.sleep(0.05)
        assert not second.done(), "160 bytes would be over the limit of 100"
        del first
        gc.collect()
        await asyncio.wait_for(second, 1)
        gc.collect()  # the second message was a temporary: freed as soon as hold returned
        assert budget.held == 0

    asyncio.run(scenario())


def test_a_message_alone_over_the_limit_passes() -> None:
    async def scenario() -> None:
        budget = FetchBudget(100)
        big = _Message()
        await asyncio.wait_for(budget.hold(big, 1_000), 1)
        assert budget.held == 1_000
        del big
        gc.collect()
        assert budget.held == 0

    asyncio.run(scenario())
