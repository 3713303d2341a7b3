"""Publishing batches and stats to Kafka with confluent-kafka: the collector's one producer (its one
consumer follows `peregrine.control`, `collectors.control`).

The producer is idempotent, compresses with lz4 and lingers briefly so batches share requests. Its
local queue is bounded: when it is full, `send` drops the batch at once and counts its events
(`userspace_queue_full`) instead of blocking, so the ring buffer keeps being drained. While the
broker is unreachable librdkafka keeps the queued batches and retries until `message.timeout.ms`;
batches it gives up on are counted as `delivery_failed`. Reachability changes are logged once
each (plus a reminder every 30 s while down), never per message; so is a refused TLS/SASL login
(`refused`), which `peregrine replay` treats as fatal. Where the broker is and how to reach it (TLS,
SASL) is the `bus.connection.KafkaConnection` it is given.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from confluent_kafka import KafkaError, Producer

from bus.clients import IDEMPOTENT_PRODUCER, librdkafka_config
from bus.connection import KafkaConnection

log = logging.getLogger("peregrine.collector.publish")

_DOWN_CODES: Final = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE)
_REMIND_S: Final = 30.0
# Errors after which retrying cannot help, and what they mean for the operator.
_REFUSED: Final = {
    KafkaError._AUTHENTICATION: "refused our credentials",
    KafkaError._SSL: "failed the TLS handshake",
}


class Publisher:
    """A Kafka sink for batches (`kind` "events") and stats (`kind` "stats")."""

    def __init__(
        self,
        kafka: KafkaConnection,
        topics: dict[str, str],
        client_id: str,
        queue_max_messages: int,
        message_timeout_ms: int,
    ) -> None:
        self.bootstrap = kafka.servers
        self.topics = topics
        conf: dict[str, Any] = {
            **librdkafka_config(kafka),
            "client.id": client_id,
            **IDEMPOTENT_PRODUCER,
            "compression.type": "lz4",
            "linger.ms": 20,
            "queue.buffering.max.messages": queue_max_messages,
            "queue.buffering.max.kbytes": 512 * 1024,
            "message.timeout.ms": message_timeout_ms,
            "reconnect.backoff.max.ms": 2000,
            "error_cb": self._on_error,
        }
        self._producer = Producer(conf)
        self.queue_full_events = 0
        self.failed_events = 0
        self.delivered_events = 0
        self.delivered_batches = 0
        self.bytes_sent = 0
        self.errors = 0
        self.reachable: bool | None = None
        # why the broker will not take us (credentials refused, TLS handshake failed), with its words
        self.refused: str | None = None
        self._last_remind = 0.0

    def _on_error(self, err: Any) -> None:
        self.errors += 1
        if err.code() in _DOWN_CODES:
            now = time.monotonic()
            if self.reachable is not False or now - self._last_remind >= _REMIND_S:
                log.warning(
                    "Kafka unreachable at %s (%s); retrying, capture continues and batches queue locally "
                    "(%d queued)",
                    self.bootstrap,
                    err.str(),
                    len(self._producer),
                )
                self._last_remind = now
            self.reachable = False
        elif err.code() in _REFUSED:
            # a refused login, or a TLS handshake that failed (certificate not verified): librdkafka
            # keeps retrying; say it once per reminder period, the reason, never the secret
            now = time.monotonic()
            refusal = f"{_REFUSED[err.code()]}: {err.str()}"
            if self.refused is None or now - self._last_remind >= _REMIND_S:
                log.error("Kafka at %s %s", self.bootstrap, refusal)
                self._last_remind = now
            self.refused = refusal
        else:
            log.warning("Kafka error: %s", err.str())

    def _delivered(self, n_events: int, size: int) -> Any:
        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                self.failed_events += n_events
                log.warning("a batch of %d events was not delivered: %s", n_events, err.str())
                return
            if self.reachable is False:
                log.warning("Kafka reachable again at %s; publishing resumed", self.bootstrap)
            self.reachable = True
            self.delivered_events += n_events
            self.delivered_batches += 1
            self.bytes_sent += size

        return on_delivery

    def send(self, kind: str, key: bytes, value: bytes, n_events: int) -> bool:
        try:
            self._producer.produce(
                self.topics[kind], value=value, key=key, on_delivery=self._delivered(n_events, len(value))
            )
        except BufferError:
            self.queue_full_events += n_events
            return False
        return True

    def poll(self) -> None:
        self._producer.poll(0)

    def wait(self, timeout_s: float) -> None:
        """Serve delivery callbacks for up to timeout_s (frees queue space)."""
        self._producer.poll(timeout_s)

    def queue_depth(self) -> int:
        return len(self._producer)

    def close(self, timeout_s: float) -> int:
        """Flush, drop what is left and destroy the producer; returns how many messages were still
        undelivered. Its threads must end before the process exits: OpenSSL's exit handler frees
        what a broker thread retrying a TLS or SCRAM login still uses (SIGSEGV, SIGABRT)."""
        left: int = self._producer.flush(timeout_s)
        self._producer.purge()
        self._producer.close()
        return left
