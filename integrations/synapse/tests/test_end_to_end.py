"""A real Synapse (the pinned PyPI release) with the module, the real southbridge binary,
and fake remote homeservers that joined a room over federation, all on loopback."""

from __future__ import annotations

import threading
import time
import unittest

from canonicaljson import encode_canonical_json

from .support.deployment import Deployment, quoted
from .support.remote import FakeHomeserver
from .support.waiting import wait_for

REMOTES = 3
DELIVERY_TIMEOUT = 60
# The remotes and Synapse share the machine's clock; what differs is how long each step took.
PRESENCE_CLOCK_TOLERANCE_MS = 2000
# The largest PDU, and EDU content, southbridge takes, in bytes of canonical JSON.
MAX_PDU_BYTES = 65_536
MAX_EDU_CONTENT_BYTES = 65_536


def to_device_messages(remote: FakeHomeserver, message_type: str) -> list[dict]:
    return [c for c in remote.edus_of_type("m.direct_to_device") if c.get("type") == message_type]


class SynapseWithSouthbridgeTests(unittest.TestCase):
    deployment: Deployment

    @classmethod
    def setUpClass(cls) -> None:
        cls.deployment = Deployment(remotes=REMOTES)
        try:
            cls.synapse = cls.deployment.synapse
            cls.user_id, cls.token, cls.device_id = cls.synapse.register("alice")
            cls.room_id = cls.deployment.create_room_joined_by_remotes(cls.token)
        except BaseException:
            cls.deployment.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.deployment.close()

    def setUp(self) -> None:
        # Every test starts with both processes up.
        southbridge = self.deployment.southbridge
        if not southbridge.child.running():
            southbridge.start()
        if not self.synapse.child.running():
            self.synapse.start()

    def send(self, count: int, label: str) -> list[str]:
        return [self.synapse.send_message(self.token, self.room_id, quoted(f"{label}-{n}"), f"{label} {n}")
                for n in range(count)]

    def assert_delivered_once_each(self, event_ids: list[str]) -> None:
        self.deployment.wait_until_every_remote_has(event_ids, DELIVERY_TIMEOUT)
        for remote in self.deployment.remotes:
            for event_id in event_ids:
                self.assertEqual(remote.pdu_arrivals(event_id), 1, f"{event_id} at {remote.server_name}")
            self.assertEqual(remote.forged(), [], f"requests without a valid signature at {remote.server_name}")

    def test_a_message_reaches_every_remote_signed_by_southbridge_and_synapse_sends_nothing(self) -> None:
        remotes = self.deployment.remotes
        # Synapse fetched the remotes' keys when they joined (a query, which stays with
        # Synapse); from here on it must not contact them.
        user_agents_before = [len(remote.user_agents()) for remote in remotes]
        connections_before = set(self.synapse.outbound_connections(self.deployment.remote_ports))
        connections_seen = set()
        stop = threading.Event()

        def watch_synapse_sockets() -> None:
            while not stop.is_set():
                connections_seen.update(self.synapse.outbound_connections(self.deployment.remote_ports))
                stop.wait(0.005)

        watcher = threading.Thread(target=watch_synapse_sockets)
        watcher.start()
        try:
            event_ids = self.send(1, "hello")
            self.assert_delivered_once_each(event_ids)
        finally:
            stop.set()
            watcher.join()
        self.assertEqual(connections_seen - connections_before, set(), "Synapse opened federation connections")
        for remote, before in zip(remotes, user_agents_before):
            self.assertEqual(set(remote.user_agents()[before:]), {"southbridge"}, remote.server_name)
            self.assertTrue(all(t.user_agent == "southbridge" for t in remote.transactions()))

    def test_typing_a_receipt_a_to_device_message_and_a_device_list_update_arrive(self) -> None:
        remotes = self.deployment.remotes
        synapse = self.synapse
        room = quoted(self.room_id)
        [event_id] = self.send(1, "read me")
        synapse.request("PUT", f"/_matrix/client/v3/rooms/{room}/typing/{quoted(self.user_id)}",
                        {"typing": True, "timeout": 30000}, self.token)
        synapse.request("POST", f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{quoted(event_id)}", {},
                        self.token)
        target = f"@remote1:{remotes[1].server_name}"
        synapse.request("PUT", "/_matrix/client/v3/sendToDevice/m.southbridge.test/todevice-1",
                        {"messages": {target: {"REMOTEDEVICE": {"secret": "for remote1"}}}}, self.token)
        synapse.request("PUT", f"/_matrix/client/v3/devices/{quoted(self.device_id)}",
                        {"display_name": "renamed for the test"}, self.token)

        def typing_everywhere() -> bool:
            return all(any(c.get("room_id") == self.room_id and c.get("user_id") == self.user_id and c.get("typing")
                           for c in r.edus_of_type("m.typing")) for r in remotes)

        def receipt_everywhere() -> bool:
            return all(any(event_id in c.get(self.room_id, {}).get("m.read", {}).get(self.user_id, {})
                           .get("event_ids", []) for c in r.edus_of_type("m.receipt")) for r in remotes)

        def device_list_everywhere() -> bool:
            return all(any(c.get("user_id") == self.user_id and c.get("device_id") == self.device_id
                           for c in r.edus_of_type("m.device_list_update")) for r in remotes)

        wait_for(typing_everywhere, DELIVERY_TIMEOUT, "m.typing at every remote")
        wait_for(receipt_everywhere, DELIVERY_TIMEOUT, "m.receipt at every remote")
        to_device = wait_for(lambda: to_device_messages(remotes[1], "m.southbridge.test"), DELIVERY_TIMEOUT,
                             "m.direct_to_device at remote1")
        self.assertEqual(to_device[0]["messages"], {target: {"REMOTEDEVICE": {"secret": "for remote1"}}})
        self.assertEqual(to_device[0]["sender"], self.user_id)
        wait_for(device_list_everywhere, DELIVERY_TIMEOUT, "m.device_list_update at every remote")
        # Synapse marks its outboxes sent once southbridge acknowledged them.
        wait_for(lambda: synapse._query_database("SELECT COUNT(*) FROM device_federation_outbox")[0] == 0,
                 DELIVERY_TIMEOUT, "Synapse's to-device outbox emptied")
        self.assertEqual(to_device_messages(remotes[0], "m.southbridge.test"), [])
        self.assertEqual(to_device_messages(remotes[2], "m.southbridge.test"), [])

    def test_a_presence_change_arrives_as_synapse_would_send_it(self) -> None:
        remotes = self.deployment.remotes
        status_msg = "in the presence test"
        presence_path = f"/_matrix/client/v3/presence/{quoted(self.user_id)}/status"
        self.synapse.request("PUT", presence_path, {"presence": "online", "status_msg": status_msg}, self.token)

        def pushed_at(remote: FakeHomeserver) -> tuple[dict, int] | None:
            for content, arrived_at_ms in remote.edus_with_arrival("m.presence"):
                for state in content.get("push", []):
                    if state.get("user_id") == self.user_id and state.get("status_msg") == status_msg:
                        return state, arrived_at_ms
            return None

        arrivals = wait_for(lambda: all(pushed_at(r) for r in remotes) and [pushed_at(r) for r in remotes],
                            DELIVERY_TIMEOUT, "the m.presence EDU at every remote")
        # Synapse's own view of the state, formatted by the same function it formats the
        # EDU's content with, but for a client: no user_id, last_active_ago as of now.
        asked_at_ms = int(time.time() * 1000)
        own = self.synapse.request("GET", presence_path, token=self.token)
        self.assertEqual((own["presence"], own["status_msg"]), ("online", status_msg))
        last_active_ts = asked_at_ms - own["last_active_ago"]
        for remote, (state, arrived_at_ms) in zip(remotes, arrivals):
            expected = {key: value for key, value in own.items() if key != "last_active_ago"}
            expected["user_id"] = self.user_id
            self.assertEqual({key: value for key, value in state.items() if key != "last_active_ago"}, expected,
                             remote.server_name)
            # How long ago the user was active, as of the EDU's arrival: southbridge adds the
            # time it held the EDU to what Synapse measured when it handed it over.
            self.assertAlmostEqual(arrived_at_ms - state["last_active_ago"], last_active_ts,
                                   delta=PRESENCE_CLOCK_TOLERANCE_MS, msg=remote.server_name)

    def test_an_event_as_large_as_synapse_accepts_is_delivered(self) -> None:
        # Synapse refuses to create an event over 65,536 bytes of canonical JSON (413 to the
        # client), so its federation sender never has a larger one; the module hands over
        # the event as Synapse measured it, and southbridge takes up to the same limit.
        remotes = self.deployment.remotes
        # The second probe has the shape of the events after it: one prev_event, the probe
        # before it (the first may merge several forward extremities).
        probe_ids = [self.synapse.send_message(self.token, self.room_id, f"size-probe-{n}", "x" * 60_000)
                     for n in range(2)]
        self.deployment.wait_until_every_remote_has(probe_ids, DELIVERY_TIMEOUT)
        probe_size = len(encode_canonical_json(remotes[0].pdu(probe_ids[1])))
        body_length = 60_000 + MAX_PDU_BYTES - probe_size
        [largest_id] = [self.synapse.send_message(self.token, self.room_id, "size-largest", "x" * body_length)]
        self.assert_delivered_once_each([largest_id])
        for remote in remotes:
            self.assertEqual(len(encode_canonical_json(remote.pdu(largest_id))), MAX_PDU_BYTES, remote.server_name)
        with self.assertRaisesRegex(AssertionError, "answered 413.*M_TOO_LARGE"):
            self.synapse.send_message(self.token, self.room_id, "size-over", "x" * (body_length + 1))
        self.assertNotIn("southbridge refused event", self.synapse.log())

    def test_edus_larger_than_southbridge_takes_are_logged_once_skipped_and_later_work_arrives(self) -> None:
        remotes = self.deployment.remotes
        synapse = self.synapse
        refused_before = synapse.metric('southbridge_synapse_units_refused_total{kind="edu"}')
        target = f"@remote0:{remotes[0].server_name}"
        # As large as Synapse lets a to-device message be: 65,536 bytes of canonical JSON.
        # The EDU's content wraps it with the sender, type and message_id, which makes it
        # larger than the 65,536 bytes southbridge takes; Synapse alone would send it.
        large = {"filler": "x" * (MAX_EDU_CONTENT_BYTES - len('{"filler":""}'))}
        synapse.request("PUT", "/_matrix/client/v3/sendToDevice/m.southbridge.large/large-1",
                        {"messages": {target: {"LARGEDEVICE": large}}}, self.token)
        # Synapse sets no limit on a status message; its m.presence EDU is larger than southbridge takes.
        presence_path = f"/_matrix/client/v3/presence/{quoted(self.user_id)}/status"
        synapse.request("PUT", presence_path, {"presence": "online", "status_msg": "y" * MAX_EDU_CONTENT_BYTES},
                        self.token)
        wait_for(lambda: synapse.metric('southbridge_synapse_units_refused_total{kind="edu"}') - refused_before == 2,
                 DELIVERY_TIMEOUT, "southbridge refuses the large to-device message and the large presence")
        small = {"secret": "after the large one"}
        synapse.request("PUT", "/_matrix/client/v3/sendToDevice/m.southbridge.small/small-1",
                        {"messages": {target: {"SMALLDEVICE": small}}}, self.token)
        synapse.request("PUT", presence_path, {"presence": "online", "status_msg": "after the large one"},
                        self.token)
        event_ids = self.send(1, "after the large EDUs")

        delivered = wait_for(lambda: to_device_messages(remotes[0], "m.southbridge.small"), DELIVERY_TIMEOUT,
                             "the small to-device message after the large one")
        self.assertEqual(delivered[0]["messages"], {target: {"SMALLDEVICE": small}})
        wait_for(lambda: all(any(state.get("status_msg") == "after the large one"
                                 for c in r.edus_of_type("m.presence") for state in c.get("push", []))
                             for r in remotes), DELIVERY_TIMEOUT, "the presence after the large one")
        self.assert_delivered_once_each(event_ids)
        wait_for(lambda: synapse._query_database("SELECT COUNT(*) FROM device_federation_outbox")[0] == 0,
                 DELIVERY_TIMEOUT, "Synapse's to-device outbox emptied")
        self.assertEqual(to_device_messages(remotes[0], "m.southbridge.large"), [])
        self.assertEqual(synapse.metric('southbridge_synapse_units_refused_total{kind="edu"}') - refused_before, 2)
        refusals = [line for line in synapse.log().splitlines() if "southbridge refused" in line]
        to_device = [line for line in refusals
                     if f"m.direct_to_device EDU (message_id " in line and f"from {self.user_id})" in line]
        self.assertEqual(len(to_device), 1, refusals)
        self.assertIn(f"for {remotes[0].server_name} and it is skipped: 413 M_TOO_LARGE", to_device[0])
        self.assertIn("over the 65536-byte EDU limit", to_device[0])
        presence = [line for line in refusals if f"m.presence EDU (presence of {self.user_id})" in line]
        self.assertEqual(len(presence), 1, refusals)
        self.assertIn(f"for {REMOTES} servers and it is skipped: 413 M_TOO_LARGE", presence[0])

if __name__ == "__main__":
    unittest.main()
