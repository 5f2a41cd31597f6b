"""Where Synapse's federation sender is turned into a client of southbridge.

Synapse keeps deciding *what* goes *where* (which events leave, which servers are in a
room, the content of every EDU); southbridge does the sending. Replaced on Synapse's one
`FederationSender` instance:

- `_send_pdu`: each event goes to the hand-off queue with its whole destination list;
  no `destination_rooms` rows, no per-destination queues, no transactions.
- `store.update_federation_out_pos("events", …)`, seen by the sender only: Synapse's
  federation stream position is written only once southbridge acknowledged every event
  up to it, so after a crash of either process the events are read and handed over again.
- `store.get_catch_up_outstanding_destinations`: nothing for Synapse's catch-up waker;
  southbridge catches destinations up.
- typing (`build_and_send_edu`), `send_presence_to_destinations`, `send_read_receipt`:
  one EDU with every destination, gathered over one reactor turn.
- to-device messages, device-list and cross-signing updates stay in Synapse's database
  outboxes and are read by Synapse's own per-destination queues, but those queues hand
  their transactions to southbridge (`TransactionManager.send_new_transaction`) and mark
  the rows sent only after southbridge acknowledged them.
- `wake_destination`: also asks southbridge to try the destination at once.

And on Synapse's federation `Authenticator`, shared by every federation servlet:

- `authenticate_request`: once a request from a remote server is authenticated, that
  server is woken in southbridge too, at most once per `inbound_wake_interval_ms`. Synapse
  itself wakes a server only when its own retry table holds a failure for it, which with
  southbridge sending it rarely does.

Federation queries (keys, profiles, joins, backfill) are untouched and stay with Synapse.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Collection, Hashable, Iterable

from prometheus_client import Counter

from synapse.api.constants import EduTypes
from synapse.federation.sender import FederationSender
from synapse.federation.sender import per_destination_queue
from synapse.federation.sender.per_destination_queue import CATCHUP_RETRY_INTERVAL
from synapse.federation.transport.server import Authenticator
from synapse.federation.units import Edu, serialize_and_filter_pdus
from synapse.handlers.presence import format_user_presence_state
from synapse.util.json import json_encoder
from synapse.util.retryutils import filter_destinations_by_retry_limiter

from .handoff import HandOffQueue
from .ingest_client import IngestClient, IngestUnavailable
from .wakeups import WakeLimiter

logger = logging.getLogger(__name__)

_EPHEMERAL_EDU_TYPES = {EduTypes.TYPING, EduTypes.PRESENCE, EduTypes.RECEIPT}
_MAX_PRESENCE_STATES_PER_EDU = 50
# southbridge refuses an EDU whose content is larger than this in canonical JSON (Synapse's
# SOFT_MAX_EDU_SIZE); presence states are packed into EDUs that stay under it.
_MAX_EDU_CONTENT_BYTES = 65_536
# Destinations whose device outbox is handed over at once when the module starts.
_OUTBOX_WAKE_BATCH = 50
# Remote servers the inbound wake-up limit remembers; past it, the one woken longest ago is
# forgotten and may be woken again early.
_INBOUND_WAKE_SERVERS_REMEMBERED = 10_000
# Wake-ups asked of southbridge at once. Past it an inbound request wakes nothing (its server
# is woken on a later request), so a southbridge that stopped answering holds few connections.
_MAX_WAKES_IN_FLIGHT = 100

wake_requests = Counter(
    "southbridge_synapse_wake_requests_total",
    "Wake-ups asked of southbridge, by cause: Synapse's wake_destination (synapse) "
    "or an authenticated inbound federation request (inbound_request)",
    ["cause"],
)


class _SenderStore:
    """The main data store as the federation sender sees it (and only the sender)."""

    def __init__(self, store: Any, federation: "SouthbridgeFederation") -> None:
        self._store = store
        self._federation = federation

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def update_federation_out_pos(self, type: str, token: int) -> None:
        if type == "events":
            await self._federation.wait_until_events_acknowledged()
        await self._store.update_federation_out_pos(type, token)

    async def get_catch_up_outstanding_destinations(self, after_destination: str | None) -> list[str]:
        return []


async def _never_backing_off(*args: Any, **kwargs: Any) -> None:
    """Handing a transaction to southbridge does not contact the remote, so Synapse's
    backoff for it (which only its own queries now grow) does not apply."""


class SouthbridgeFederation:
    def __init__(
        self, hs: Any, api: Any, handoff: HandOffQueue, client: IngestClient, inbound_wake_interval_s: float
    ) -> None:
        self._hs = hs
        self._api = api
        self._handoff = handoff
        self._client = client
        self._clock = hs.get_clock()
        self._reactor = hs.get_reactor()
        self._server_name = hs.hostname
        self._store = hs.get_datastores().main
        self._last_event_sequence = 0
        # (edu_type, content JSON) -> (what the EDU is, for the log; its destinations),
        # gathered until the next reactor turn
        self._ephemeral: dict[tuple[str, str], tuple[str, set[str]]] = {}
        self._ephemeral_flush_scheduled = False
        self._wakes_in_flight: set[str] = set()
        self._inbound_wakes = WakeLimiter(inbound_wake_interval_s, _INBOUND_WAKE_SERVERS_REMEMBERED, time.monotonic)
        self._wakes_refused = False
        self._inbound_wake_error_logged = False
        self._sender: FederationSender | None = None

    def install(self, sender: FederationSender) -> None:
        self._sender = sender
        self._original_get_queue = sender._get_per_destination_queue
        self._original_wake_destination = sender.wake_destination
        sender._send_pdu = self._send_pdu
        sender.store = _SenderStore(sender.store, self)
        sender.build_and_send_edu = self._build_and_send_edu
        sender.send_edu = self._send_edu
        sender.send_presence_to_destinations = self._send_presence_to_destinations
        sender.send_read_receipt = self._send_read_receipt
        sender.send_device_messages = self._send_device_messages
        sender.wake_destination = self._wake_destination
        sender._get_per_destination_queue = self._get_per_destination_queue
        sender._transaction_manager.send_new_transaction = self._send_transaction
        self._wake_on_authenticated_requests()
        per_destination_queue.get_retry_limiter = _never_backing_off
        for queue in sender._per_destination_queues.values():
            _without_pdu_catch_up(queue)
        self._api.looping_background_call(self._hand_over_device_outboxes, 60_000)
        self._reactor.callLater(0, self._api.run_as_background_process,
                                "southbridge_device_outboxes", self._hand_over_device_outboxes)

    # PDUs

    async def _send_pdu(self, pdu: Any, destinations: Iterable[str]) -> None:
        assert self._sender is not None
        allowed = self._hs.config.federation.is_domain_allowed_according_to_federation_whitelist
        targets = sorted({d for d in destinations if d != self._server_name and allowed(d)})
        if not targets:
            return
        unit = _pdu_unit(pdu, targets)
        if unit is None:
            return
        # Stop taking events from Synapse's stream while southbridge is this far behind.
        await self._handoff.wait_for_room()
        self._last_event_sequence = self._handoff.submit(
            "pdu", unit, f"event {pdu.event_id} in {pdu.room_id} for {len(targets)} servers"
        )

    async def wait_until_events_acknowledged(self) -> None:
        await self._handoff.wait_until_acknowledged(self._last_event_sequence)

    # Typing, presence and receipts: in memory in Synapse too, so handed over without waiting.

    def _build_and_send_edu(
        self, destination: str, edu_type: str, content: dict, key: Hashable | None = None
    ) -> None:
        if self._hs.is_mine_server_name(destination):
            return
        if not self._handles(destination):
            return
        self._gather(edu_type, content, [destination])

    def _send_edu(self, edu: Edu, key: Hashable | None) -> None:
        self._build_and_send_edu(edu.destination, edu.edu_type, edu.content, key)

    async def _send_presence_to_destinations(self, states: Iterable[Any], destinations: Iterable[str]) -> None:
        states = list(states)
        if not states or not self._hs.config.server.track_presence:
            return
        targets = await self._reachable_by_synapse(
            [d for d in destinations if self._handles(d) and not self._hs.is_mine_server_name(d)]
        )
        if not targets:
            return
        now = self._clock.time_msec()
        for push in pack_presence([format_user_presence_state(s, now) for s in states]):
            self._gather(EduTypes.PRESENCE, {"push": push}, targets)

    async def _send_read_receipt(self, receipt: Any) -> None:
        assert self._sender is not None
        hosts = await self._hs.get_storage_controllers().state.get_current_hosts_in_room_or_partial_state_approximation(
            receipt.room_id
        )
        targets = await self._reachable_by_synapse(
            [d for d in hosts if not self._hs.is_mine_server_name(d) and self._handles(d)]
        )
        if not targets:
            return
        data = dict(receipt.data)
        if receipt.thread_id is not None:
            data["thread_id"] = receipt.thread_id
        content = {
            receipt.room_id: {
                receipt.receipt_type: {receipt.user_id: {"event_ids": list(receipt.event_ids), "data": data}}
            }
        }
        self._gather(EduTypes.RECEIPT, content, targets)

    def _gather(self, edu_type: str, content: dict, destinations: Collection[str]) -> None:
        key = (edu_type, json_encoder.encode(content))
        gathered = self._ephemeral.get(key)
        if gathered is None:
            gathered = self._ephemeral[key] = (describe_edu(edu_type, content), set())
        gathered[1].update(destinations)
        if not self._ephemeral_flush_scheduled:
            self._ephemeral_flush_scheduled = True
            self._reactor.callLater(0, self._flush_gathered)

    def _flush_gathered(self) -> None:
        gathered, self._ephemeral = self._ephemeral, {}
        self._ephemeral_flush_scheduled = False
        for (edu_type, content_json), (what, destinations) in gathered.items():
            unit = (
                '{"edu_type":' + json_encoder.encode(edu_type)
                + ',"content":' + content_json
                + ',"destinations":' + json_encoder.encode(sorted(destinations)) + "}"
            ).encode()
            description = f"{what} for {len(destinations)} servers"
            if edu_type in _EPHEMERAL_EDU_TYPES:
                self._handoff.submit_ephemeral(unit, description)
            else:
                self._handoff.submit("edu", unit, description)

    async def _reachable_by_synapse(self, destinations: list[str]) -> list[str]:
        # As Synapse does: skip servers it will not retry for an hour. Its backoff now
        # only grows from its own queries (keys, profiles, joins).
        return list(
            await filter_destinations_by_retry_limiter(
                destinations,
                clock=self._clock,
                store=self._store,
                retry_due_within_ms=CATCHUP_RETRY_INTERVAL,
            )
        )

    def _handles(self, destination: str) -> bool:
        return self._hs.config.worker.federation_shard_config.should_handle(
            self._hs.get_instance_name(), destination
        )

    # To-device and device lists: read from Synapse's outboxes by its per-destination queues.

    async def _send_device_messages(self, destinations: Collection[str], immediate: bool = True) -> None:
        # southbridge paces device-list wake-ups itself, so every destination is handed
        # its outbox rows at once.
        for destination in destinations:
            if self._hs.is_mine_server_name(destination) or not self._handles(destination):
                continue
            queue = self._get_per_destination_queue(destination)
            if queue is not None:
                queue.attempt_new_transaction()

    def _get_per_destination_queue(self, destination: str) -> Any:
        known = self._sender._per_destination_queues if self._sender else {}
        is_new = destination not in known
        queue = self._original_get_queue(destination)
        if queue is not None and is_new:
            _without_pdu_catch_up(queue)
        return queue

    async def _send_transaction(self, destination: str, pdus: list[Any], edus: list[Edu]) -> None:
        """What a per-destination queue calls to send a transaction: hands its units to
        southbridge and returns once southbridge has acknowledged them, so the queue then
        marks its outbox rows sent. Retries until then; never raises for southbridge."""
        if not pdus and not edus:
            return
        await self._handoff.wait_for_room()
        targets = [destination]
        sequence = 0
        for pdu in pdus:
            unit = _pdu_unit(pdu, targets)
            if unit is not None:
                sequence = self._handoff.submit("pdu", unit, f"event {pdu.event_id} in {pdu.room_id} for {destination}")
        for edu in edus:
            unit = json_encoder.encode(
                {"edu_type": edu.edu_type, "content": edu.content, "destinations": targets}
            ).encode()
            sequence = self._handoff.submit("edu", unit, f"{describe_edu(edu.edu_type, edu.content)} for {destination}")
        await self._handoff.wait_until_acknowledged(sequence)

    async def _hand_over_device_outboxes(self) -> None:
        """Wakes the per-destination queue of every server with to-device messages or
        device-list updates not yet handed over: the work of Synapse's catch-up waker
        that is still Synapse's own."""
        destinations = await self._api.run_db_interaction(
            "southbridge_device_outbox_destinations", _device_outbox_destinations
        )
        for index, destination in enumerate(destinations):
            if self._hs.is_mine_server_name(destination) or not self._handles(destination):
                continue
            queue = self._get_per_destination_queue(destination)
            if queue is not None:
                queue.attempt_new_transaction()
            if (index + 1) % _OUTBOX_WAKE_BATCH == 0:
                await self._api.sleep(0.05)

    # Wake-ups

    def _wake_destination(self, destination: str) -> None:
        self._original_wake_destination(destination)
        if self._hs.is_mine_server_name(destination) or destination in self._wakes_in_flight:
            return
        self._wake_southbridge_in_background(destination, "synapse")

    def _wake_on_authenticated_requests(self) -> None:
        # Every servlet of Synapse's federation API authenticates its request through
        # Authenticator.authenticate_request, looked up on the class at each request.
        authenticate_request = Authenticator.authenticate_request
        on_inbound_request = self._on_inbound_request

        @functools.wraps(authenticate_request)
        async def authenticate_request_and_wake(authenticator: Any, request: Any, content: Any) -> str:
            origin = await authenticate_request(authenticator, request, content)
            on_inbound_request(origin)
            return origin

        Authenticator.authenticate_request = authenticate_request_and_wake

    def _on_inbound_request(self, origin: str) -> None:
        """Called once a request from `origin` is authenticated, before Synapse handles it;
        never raises, never waits."""
        try:
            if self._hs.is_mine_server_name(origin) or origin in self._wakes_in_flight:
                return
            if len(self._wakes_in_flight) >= _MAX_WAKES_IN_FLIGHT or not self._inbound_wakes.allow(origin):
                return
            self._wake_southbridge_in_background(origin, "inbound_request")
        except Exception:
            if not self._inbound_wake_error_logged:
                self._inbound_wake_error_logged = True
                logger.exception("southbridge_synapse: cannot wake %s after its request (not logged again)", origin)

    def _wake_southbridge_in_background(self, destination: str, cause: str) -> None:
        self._wakes_in_flight.add(destination)
        try:
            self._api.run_as_background_process("southbridge_wake", self._wake_southbridge, destination)
        except Exception:
            self._wakes_in_flight.discard(destination)
            self._inbound_wakes.forget(destination)
            raise
        wake_requests.labels(cause).inc()

    async def _wake_southbridge(self, destination: str) -> None:
        try:
            answer = await self._client.wake(destination)
        except IngestUnavailable as error:
            # The hand-off queue reports southbridge being down, once per episode. The
            # server's next request wakes it again.
            self._inbound_wakes.forget(destination)
            logger.debug("southbridge_synapse: waking %s in southbridge: %s", destination, error)
            return
        finally:
            self._wakes_in_flight.discard(destination)
        # 404: southbridge never sent that server anything, so there is nothing to wake.
        if answer.status in (200, 404):
            if self._wakes_refused:
                self._wakes_refused = False
                logger.info("southbridge_synapse: southbridge takes wake-ups again")
        elif not self._wakes_refused:
            self._wakes_refused = True
            logger.warning(
                "southbridge_synapse: southbridge refuses to wake %s: %s %s (not logged again until a wake-up succeeds)",
                destination, answer.status, answer.error,
            )


def _pdu_unit(pdu: Any, destinations: list[str]) -> bytes | None:
    """The ingest unit of one event, as Synapse would put it in a transaction (None for an
    event Synapse would not send: a depth out of range)."""
    serialized = serialize_and_filter_pdus([pdu])
    if not serialized:
        return None
    return json_encoder.encode({"pdu": serialized[0], "destinations": destinations, "event_id": pdu.event_id}).encode()


def pack_presence(states: list[dict]) -> list[list[dict]]:
    """Formatted presence states in EDUs of at most _MAX_PRESENCE_STATES_PER_EDU states and
    _MAX_EDU_CONTENT_BYTES of content, in order. A state too large for an EDU of its own
    (a huge status_msg) goes alone: southbridge refuses it and the others still go."""
    envelope = len('{"push":[]}')
    pushes: list[list[dict]] = []
    push: list[dict] = []
    size = envelope
    for state in states:
        # An upper bound on its canonical size: json_encoder escapes every non-ASCII character.
        state_size = len(json_encoder.encode(state))
        if push and (len(push) >= _MAX_PRESENCE_STATES_PER_EDU or size + 1 + state_size > _MAX_EDU_CONTENT_BYTES):
            pushes.append(push)
            push, size = [], envelope
        size += state_size + (1 if push else 0)  # and the comma before it
        push.append(state)
    if push:
        pushes.append(push)
    return pushes


def describe_edu(edu_type: str, content: Any) -> str:
    """Names an EDU for the log: its type and what identifies its content."""
    content = content if isinstance(content, dict) else {}
    if edu_type == EduTypes.TYPING:
        detail = f"{content.get('user_id')} in {content.get('room_id')}"
    elif edu_type == EduTypes.PRESENCE:
        users = [state.get("user_id") for state in content.get("push", []) if isinstance(state, dict)] or [None]
        detail = f"presence of {users[0]}" + (f" and {len(users) - 1} more users" if len(users) > 1 else "")
    elif edu_type == EduTypes.RECEIPT:
        detail = "receipts in " + ", ".join(sorted(content)[:3]) + (" …" if len(content) > 3 else "")
    elif edu_type == EduTypes.DIRECT_TO_DEVICE:
        detail = f"message_id {content.get('message_id')} from {content.get('sender')}"
    elif edu_type == EduTypes.DEVICE_LIST_UPDATE:
        detail = f"{content.get('user_id')} device {content.get('device_id')}, stream_id {content.get('stream_id')}"
    elif edu_type == EduTypes.SIGNING_KEY_UPDATE:
        detail = f"{content.get('user_id')}"
    else:
        return f"{edu_type} EDU"
    return f"{edu_type} EDU ({detail})"


def _without_pdu_catch_up(queue: Any) -> None:
    # southbridge owns the PDUs: Synapse's catch-up over destination_rooms (entered at
    # start and after a long backoff) would send them a second time.
    queue._catching_up = False
    queue._start_catching_up = lambda: None


def _device_outbox_destinations(txn: Any) -> list[str]:
    txn.execute(
        "SELECT destination FROM device_federation_outbox"
        " UNION SELECT destination FROM device_lists_outbound_pokes WHERE sent = ?",
        (False,),
    )
    return sorted(row[0] for row in txn.fetchall())
