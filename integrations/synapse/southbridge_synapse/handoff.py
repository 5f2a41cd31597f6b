"""The hand-off queue: work taken from Synapse, in the order taken, until southbridge has
acknowledged it.

One ingest request is in flight at a time, carrying everything queued meanwhile (bounded
by count and bytes), so PDUs reach southbridge in the order Synapse's federation stream
produced them and a burst costs a few requests, not one per event. A request that fails
is retried unchanged, with the same txnId, after a capped backoff: southbridge answers a
repeated txnId with its first answer and stores nothing twice, so a request whose answer
was lost (southbridge killed after its commit) is never stored twice.

Callers learn when their work is acknowledged by sequence number: every unit gets one,
and `wait_until_acknowledged(n)` returns once every unit up to `n` is acknowledged.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from typing import Any, Awaitable, Callable

from prometheus_client import Counter, Gauge
from twisted.internet import defer

from synapse.module_api import make_deferred_yieldable

from .config import SouthbridgeConfig
from .ingest_client import IngestClient, IngestUnavailable

logger = logging.getLogger(__name__)

units_handed_over = Counter(
    "southbridge_synapse_units_handed_over_total",
    "PDUs and EDUs southbridge acknowledged",
    ["kind"],
)
ingest_requests = Counter(
    "southbridge_synapse_ingest_requests_total",
    "Ingest requests by outcome (accepted, failed, refused)",
    ["outcome"],
)
units_refused = Counter(
    "southbridge_synapse_units_refused_total",
    "Units southbridge refused as malformed or too large; they are logged and skipped",
    ["kind"],
)
ephemeral_edus_dropped = Counter(
    "southbridge_synapse_ephemeral_edus_dropped_total",
    "Typing, presence and receipt EDUs dropped because the buffer was full",
)
buffered_units = Gauge("southbridge_synapse_buffered_units", "Units taken from Synapse, not yet acknowledged")
buffered_bytes = Gauge("southbridge_synapse_buffered_bytes", "Bytes of JSON taken from Synapse, not yet acknowledged")
ingest_unreachable = Gauge(
    "southbridge_synapse_ingest_unreachable", "1 while the last attempt to reach southbridge failed"
)
waiting_for_room = Gauge(
    "southbridge_synapse_waiting_for_buffer_room",
    "Synapse tasks (its federation event stream, per-destination outboxes) waiting for the "
    "unacknowledged work to fall under max_buffer_bytes",
)

# southbridge refuses more than 1,000 PDUs or 1,000 EDUs in one request.
_MAX_UNITS_OF_A_KIND = 1000


class _Unit:
    __slots__ = ("sequence", "kind", "json", "description")

    def __init__(self, sequence: int, kind: str, json: bytes, description: str) -> None:
        self.sequence = sequence
        self.kind = kind  # "pdu" or "edu"
        self.json = json
        self.description = description


class HandOffQueue:
    def __init__(
        self,
        client: IngestClient,
        config: SouthbridgeConfig,
        run_in_background: Callable[[str, Callable[[], Awaitable[None]]], Any],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._client = client
        self._config = config
        self._run_in_background = run_in_background
        self._sleep = sleep
        self._pending: deque[_Unit] = deque()
        # Bytes of every unit not yet acknowledged, the request in flight included.
        self._unacknowledged_bytes = 0
        self._unacknowledged_units = 0
        self._last_sequence = 0
        self._acknowledged_through = 0
        self._acknowledgement_waiters: list[tuple[int, defer.Deferred]] = []
        self._room_waiters: deque[defer.Deferred] = deque()
        self._flushing = False
        # txnIds never repeat across Synapse restarts: a repeated txnId would be answered
        # with the first answer and its new content silently ignored.
        self._txn_prefix = f"synapse-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
        self._txn_counter = 0
        self._unreachable_since: float | None = None
        # While the buffer is full: logged once when it fills and once when it has room again.
        self._full_episode = False
        self._dropped_this_episode = 0

    @property
    def last_sequence(self) -> int:
        return self._last_sequence

    @property
    def full(self) -> bool:
        return self._unacknowledged_bytes >= self._config.max_buffer_bytes

    def submit(self, kind: str, json: bytes, description: str) -> int:
        """Queues one ingest unit (the JSON of one `pdus[]` or `edus[]` entry); returns its
        sequence number. Callers that take work from a stream call `wait_for_room` first."""
        self._last_sequence += 1
        self._pending.append(_Unit(self._last_sequence, kind, json, description))
        self._unacknowledged_bytes += len(json)
        self._unacknowledged_units += 1
        self._update_gauges()
        if self.full and not self._full_episode:
            self._full_episode = True
            logger.warning(
                "southbridge_synapse: %d bytes of work taken from Synapse are not yet acknowledged by "
                "southbridge at %s (max_buffer_bytes %d); Synapse's federation stream waits and typing, "
                "presence and receipt updates are dropped until southbridge catches up",
                self._unacknowledged_bytes,
                self._client.address,
                self._config.max_buffer_bytes,
            )
        self._start_flushing()
        return self._last_sequence

    def submit_ephemeral(self, json: bytes, description: str) -> None:
        """Queues a typing, presence or receipt EDU unless the buffer is full: those are
        states that the next update replaces, and Synapse keeps no copy to re-read."""
        if self.full:
            ephemeral_edus_dropped.inc()
            self._dropped_this_episode += 1
            logger.debug("southbridge_synapse: buffer full, dropped %s", description)
            return
        self.submit("edu", json, description)

    async def wait_for_room(self) -> None:
        """Returns once the unacknowledged work is under `max_buffer_bytes`."""
        while self.full:
            waiter: defer.Deferred = defer.Deferred()
            self._room_waiters.append(waiter)
            waiting_for_room.inc()
            try:
                await make_deferred_yieldable(waiter)
            finally:
                waiting_for_room.dec()

    async def wait_until_acknowledged(self, sequence: int) -> None:
        if sequence <= self._acknowledged_through:
            return
        waiter: defer.Deferred = defer.Deferred()
        self._acknowledgement_waiters.append((sequence, waiter))
        await make_deferred_yieldable(waiter)

    def _start_flushing(self) -> None:
        if self._flushing or not self._pending:
            return
        self._flushing = True
        self._run_in_background("southbridge_hand_off", self._flush)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._take_batch()
                await self._hand_over(batch)
                self._acknowledge(batch)
        finally:
            self._flushing = False

    def _take_batch(self) -> list[_Unit]:
        batch: list[_Unit] = []
        size = 0
        counts = {"pdu": 0, "edu": 0}
        while self._pending and len(batch) < self._config.max_batch_units:
            unit = self._pending[0]
            if batch and (
                size + len(unit.json) > self._config.max_batch_bytes
                or counts[unit.kind] >= _MAX_UNITS_OF_A_KIND
            ):
                break
            self._pending.popleft()
            batch.append(unit)
            size += len(unit.json)
            counts[unit.kind] += 1
        return batch

    async def _hand_over(self, batch: list[_Unit]) -> None:
        """Returns once southbridge accepted the batch, or refused a unit of it for its
        content (then logged and skipped); retries everything else forever."""
        txn_id = self._next_txn_id()
        body = _request_body(batch)
        delay_ms = self._config.retry_initial_ms
        while True:
            try:
                answer = await self._client.send(txn_id, body)
            except IngestUnavailable as error:
                problem = str(error)
            except Exception as error:  # a bug must not lose the batch: retry it
                logger.exception("southbridge_synapse: handing over %s failed", txn_id)
                problem = f"{type(error).__name__}: {error}"
            else:
                if answer.status == 200:
                    ingest_requests.labels("accepted").inc()
                    self._reachable()
                    return
                if answer.status in (400, 413):
                    # southbridge refuses this content; sending the same bytes again can
                    # never succeed, so narrow it down to the unit it refuses.
                    ingest_requests.labels("refused").inc()
                    self._reachable()
                    if len(batch) > 1:
                        middle = len(batch) // 2
                        await self._hand_over(batch[:middle])
                        await self._hand_over(batch[middle:])
                    else:
                        units_refused.labels(batch[0].kind).inc()
                        logger.error(
                            "southbridge_synapse: southbridge refused %s and it is skipped: %s %s",
                            batch[0].description,
                            answer.status,
                            answer.error,
                        )
                    return
                problem = f"HTTP {answer.status} {answer.error}"
            ingest_requests.labels("failed").inc()
            self._unreachable(problem, delay_ms)
            await self._sleep(delay_ms / 1000)
            delay_ms = min(delay_ms * 2, self._config.retry_max_ms)

    def _acknowledge(self, batch: list[_Unit]) -> None:
        for unit in batch:
            units_handed_over.labels(unit.kind).inc()
            self._unacknowledged_bytes -= len(unit.json)
        self._unacknowledged_units -= len(batch)
        self._acknowledged_through = batch[-1].sequence
        self._update_gauges()
        if self._acknowledgement_waiters:
            still_waiting = []
            for sequence, waiter in self._acknowledgement_waiters:
                if sequence <= self._acknowledged_through:
                    waiter.callback(None)
                else:
                    still_waiting.append((sequence, waiter))
            self._acknowledgement_waiters = still_waiting
        while self._room_waiters and not self.full:
            self._room_waiters.popleft().callback(None)
        if not self.full and self._full_episode:
            logger.info(
                "southbridge_synapse: unacknowledged work below max_buffer_bytes again; Synapse's "
                "federation stream moves on; %d typing, presence and receipt updates were dropped meanwhile",
                self._dropped_this_episode,
            )
            self._full_episode = False
            self._dropped_this_episode = 0

    def _unreachable(self, problem: str, delay_ms: int) -> None:
        ingest_unreachable.set(1)
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
            logger.warning(
                "southbridge_synapse: cannot hand work to southbridge at %s (%s); keeping the %d "
                "units taken from Synapse and retrying every %.1f s at most (nothing is lost, "
                "Synapse's federation stream waits for southbridge)",
                self._client.address,
                problem,
                self._unacknowledged_units,
                self._config.retry_max_ms / 1000,
            )
        else:
            logger.debug("southbridge_synapse: still cannot reach southbridge: %s", problem)

    def _reachable(self) -> None:
        ingest_unreachable.set(0)
        if self._unreachable_since is not None:
            logger.info(
                "southbridge_synapse: southbridge at %s answers again after %.1f s",
                self._client.address,
                time.monotonic() - self._unreachable_since,
            )
            self._unreachable_since = None

    def _next_txn_id(self) -> str:
        self._txn_counter += 1
        return f"{self._txn_prefix}-{self._txn_counter}"

    def _update_gauges(self) -> None:
        buffered_units.set(self._unacknowledged_units)
        buffered_bytes.set(self._unacknowledged_bytes)


def _request_body(batch: list[_Unit]) -> bytes:
    pdus = [unit.json for unit in batch if unit.kind == "pdu"]
    edus = [unit.json for unit in batch if unit.kind == "edu"]
    return b'{"pdus":[' + b",".join(pdus) + b'],"edus":[' + b",".join(edus) + b"]}"
