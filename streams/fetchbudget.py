"""How many bytes of fetched messages the worker holds at once, whatever their count.

Faust bounds a stream's buffer by messages (`stream_buffer_maxsize`), and a message is up to
`bus.topics.MAX_DECOMPRESSED_BYTES` once aiokafka has decompressed it: counted in messages, a node's
few-KB batches that decompress to 14 MB each took a worker past 900 MB before the agent caught up.
The consumer (`streams.app`) asks `hold` before handing each message on; over the budget it waits
until earlier messages are gone. A message is gone when nothing references it any more (a weakref
finalizer), which is exactly when its bytes can be freed, wherever Faust or the agent let go of it.
A message alone over the budget still passes, alone, so the budget cannot stop the partition.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Final

# How often a fetch over the budget looks again; the budget is only reached by hostile or runaway
# batches, so a short sleep is simpler than waking across the threads finalizers run in.
_RECHECK_S: Final = 0.005


class FetchBudget:
    """Bytes of message values handed on and not yet freed; `hold` waits while over `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        return self._held

    async def hold(self, message: object, size: int) -> None:
        """Count ``size`` bytes until ``message`` is freed, after waiting for room if over budget."""
        while self._held and self._held + size > self.limit:
            await asyncio.sleep(_RECHECK_S)
        with self._lock:
            self._held += size
        weakref.finalize(message, self._release, size)

    def _release(self, size: int) -> None:
        with self._lock:
            self._held -= size
