"""A real Synapse (the pinned PyPI release) with the module, the real southbridge binary,
and fake remote homeservers that joined a room over federation, all on loopback."""

from __future__ import annotations

import threading
import unittest

from .support.deployment import Deployment, quoted
from .support.waiting import wait_for

REMOTES = 3
DELIVERY_TIMEOUT = 60


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
        to_device = wait_for(lambda: remotes[1].edus_of_type("m.direct_to_device"), DELIVERY_TIMEOUT,
                             "m.direct_to_device at remote1")
        self.assertEqual(to_device[0]["messages"], {target: {"REMOTEDEVICE": {"secret": "for remote1"}}})
        self.assertEqual(to_device[0]["sender"], self.user_id)
        wait_for(device_list_everywhere, DELIVERY_TIMEOUT, "m.device_list_update at every remote")
        # Synapse marks its outboxes sent once southbridge acknowledged them.
        wait_for(lambda: synapse._query_database("SELECT COUNT(*) FROM device_federation_outbox")[0] == 0,
                 DELIVERY_TIMEOUT, "Synapse's to-device outbox emptied")
        self.assertEqual(remotes[0].edus_of_type("m.direct_to_device"), [])
        self.assertEqual(remotes[2].edus_of_type("m.direct_to_device"), [])

    def test_southbridge_killed_mid_stream_then_every_event_arrives_and_is_handed_over_once(self) -> None:
        southbridge = self.deployment.southbridge
        remotes = self.deployment.remotes
        handed_over_before = self.synapse.metric('southbridge_synapse_units_handed_over_total{kind="pdu"}')
        event_ids = self.send(10, "before kill")
        # Killed while the module is handing these over or southbridge is sending them:
        # what southbridge acknowledged is in its outbox, the rest still in Synapse's stream.
        southbridge.kill()
        arrived_before_kill = {remote.server_name: {e: remote.pdu_arrivals(e) for e in event_ids}
                               for remote in remotes}
        event_ids += self.send(10, "while down")
        wait_for(lambda: "cannot hand work to southbridge" in self.synapse.log(), DELIVERY_TIMEOUT,
                 "the module logs that southbridge is unreachable")
        self.assertLess(self.synapse.federation_stream_position(), self.synapse.stream_ordering(event_ids[-1]),
                        "Synapse's federation stream moved past what southbridge acknowledged")
        southbridge.start()
        event_ids += self.send(10, "after restart")
        self.deployment.wait_until_every_remote_has(event_ids, DELIVERY_TIMEOUT)
        wait_for(lambda: self.synapse.federation_stream_position() >= self.synapse.stream_ordering(event_ids[-1]),
                 DELIVERY_TIMEOUT, "Synapse's federation stream position catches up")
        # Each event was handed to southbridge once: a request whose answer the kill cut
        # off was retried with its txnId, which southbridge answers without storing again.
        self.assertEqual(
            self.synapse.metric('southbridge_synapse_units_handed_over_total{kind="pdu"}') - handed_over_before,
            len(event_ids))
        for remote in remotes:
            self.assertEqual(remote.forged(), [])
            for event_id in event_ids:
                arrivals = remote.pdu_arrivals(event_id)
                # southbridge writes delivery progress up to 0.5 s after the remote's 200, so a
                # kill may make it send again what it delivered just before; receivers drop
                # a repeated event by its ID. Nothing else is sent twice.
                if arrived_before_kill[remote.server_name].get(event_id, 0) == 0:
                    self.assertEqual(arrivals, 1, f"{event_id} at {remote.server_name}")
                else:
                    self.assertLessEqual(arrivals, 2, f"{event_id} at {remote.server_name}")
        self.assertEqual(self.synapse.log().count("cannot hand work to southbridge"), 1,
                         "one log line per episode of southbridge being unreachable")

    def test_synapse_restarted_while_southbridge_is_down_loses_nothing(self) -> None:
        southbridge = self.deployment.southbridge
        southbridge.kill()
        event_ids = self.send(5, "synapse restart")
        self.synapse.stop()
        self.synapse.start()
        event_ids += self.send(5, "after synapse restart")
        southbridge.start()
        self.assert_delivered_once_each(event_ids)


if __name__ == "__main__":
    unittest.main()
