"""The module's memory bound (`max_buffer_bytes`) with southbridge paused: once that much
work taken from Synapse is unacknowledged, Synapse's federation event stream waits and
typing notifications are dropped rather than buffered; once southbridge answers again every
event arrives, and later typing does too. The real Synapse, the southbridge binary (stopped
with SIGSTOP: its sockets stay open, nothing is answered) and fake remote homeservers."""

from __future__ import annotations

import unittest

from .support.deployment import Deployment, quoted
from .support.remote import FakeHomeserver
from .support.waiting import wait_for

REMOTES = 2
MAX_BUFFER_BYTES = 1024 * 1024  # the smallest the module takes
DELIVERY_TIMEOUT = 60
# To-device messages that fill the buffer: each in an EDU of its own, well under the
# 64 KiB southbridge takes, together more than MAX_BUFFER_BYTES.
FILLER_MESSAGES = 18
FILLER_BYTES = 62_000
BUFFERED_BYTES = "southbridge_synapse_buffered_bytes"
BUFFERED_UNITS = "southbridge_synapse_buffered_units"
WAITING = "southbridge_synapse_waiting_for_buffer_room"
DROPPED = "southbridge_synapse_ephemeral_edus_dropped_total"


class FullBufferTests(unittest.TestCase):
    deployment: Deployment

    @classmethod
    def setUpClass(cls) -> None:
        cls.deployment = Deployment(
            remotes=REMOTES,
            module_config={"max_buffer_bytes": MAX_BUFFER_BYTES, "request_timeout_ms": 2000,
                           "retry_initial_ms": 100, "retry_max_ms": 500},
            # Presence off: the only typing, presence or receipt updates are the test's typing.
            synapse_config={"presence": {"enabled": False}})
        try:
            synapse = cls.synapse = cls.deployment.synapse
            cls.alice, cls.alice_token, _ = synapse.register("alice")
            cls.bob, cls.bob_token, _ = synapse.register("bob")
            cls.room_id = cls.deployment.create_room_joined_by_remotes(cls.alice_token)
            synapse.request("POST", f"/_matrix/client/v3/join/{quoted(cls.room_id)}", {}, cls.bob_token)
        except BaseException:
            cls.deployment.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.deployment.close()

    def typing(self, user_id: str, token: str) -> None:
        self.synapse.request("PUT", f"/_matrix/client/v3/rooms/{quoted(self.room_id)}/typing/{quoted(user_id)}",
                             {"typing": True, "timeout": 30000}, token)

    def typing_arrived(self, remote: FakeHomeserver, user_id: str) -> bool:
        return any(c.get("room_id") == self.room_id and c.get("user_id") == user_id and c.get("typing")
                   for c in remote.edus_of_type("m.typing"))

    def test_a_full_buffer_holds_the_event_stream_and_drops_typing_then_every_event_arrives(self) -> None:
        synapse = self.synapse
        southbridge = self.deployment.southbridge
        remote = self.deployment.remotes[0]
        # Everything from setting up the room has been handed over.
        wait_for(lambda: synapse.federation_stream_position() >= synapse.latest_stream_ordering()
                 and synapse.metric(BUFFERED_UNITS) == 0, DELIVERY_TIMEOUT, "every event so far handed over")
        dropped_before = synapse.metric(DROPPED)

        southbridge.pause()
        self.addCleanup(southbridge.resume)
        target = f"@remote0:{remote.server_name}"
        fillers = {f"FILLER{n:02}": {"filler": chr(ord("a") + n) * FILLER_BYTES} for n in range(FILLER_MESSAGES)}
        synapse.request("PUT", "/_matrix/client/v3/sendToDevice/m.southbridge.filler/fill-1",
                        {"messages": {target: fillers}}, self.alice_token)
        wait_for(lambda: synapse.metric(BUFFERED_BYTES) >= MAX_BUFFER_BYTES, DELIVERY_TIMEOUT,
                 "the to-device messages fill the buffer")
        full_with = synapse.metric(BUFFERED_UNITS)
        self.assertGreaterEqual(full_with, FILLER_MESSAGES)

        # Synapse's event stream stops at the first event that comes after: it is not buffered.
        event_ids = [synapse.send_message(self.alice_token, self.room_id, f"while-full-{n}", f"while full {n}")
                     for n in range(3)]
        wait_for(lambda: synapse.metric(WAITING) >= 1, DELIVERY_TIMEOUT, "Synapse's event stream waits for room")
        self.assertLess(synapse.federation_stream_position(), synapse.stream_ordering(event_ids[0]))
        # Typing is dropped, not buffered.
        self.typing(self.alice, self.alice_token)
        wait_for(lambda: synapse.metric(DROPPED) == dropped_before + 1, DELIVERY_TIMEOUT,
                 "alice's typing dropped")
        self.assertEqual(synapse.metric(BUFFERED_UNITS), full_with)

        southbridge.resume()
        self.deployment.wait_until_every_remote_has(event_ids, DELIVERY_TIMEOUT)
        wait_for(lambda: len(to_device_fillers(remote)) == FILLER_MESSAGES, DELIVERY_TIMEOUT,
                 "every to-device message that filled the buffer at remote0")
        wait_for(lambda: synapse.metric(BUFFERED_UNITS) == 0 and synapse.metric(WAITING) == 0, DELIVERY_TIMEOUT,
                 "the buffer drained and nothing waiting for room")
        wait_for(lambda: synapse.federation_stream_position() >= synapse.stream_ordering(event_ids[-1]),
                 DELIVERY_TIMEOUT, "Synapse's federation stream position moves past the events")
        # Typing after the outage arrives; the dropped typing is not sent again.
        self.typing(self.bob, self.bob_token)
        wait_for(lambda: all(self.typing_arrived(r, self.bob) for r in self.deployment.remotes), DELIVERY_TIMEOUT,
                 "bob's typing at every remote")
        self.assertEqual([r.server_name for r in self.deployment.remotes if self.typing_arrived(r, self.alice)], [])
        self.assertEqual(synapse.metric(DROPPED), dropped_before + 1)

        for event_id in event_ids:
            for each in self.deployment.remotes:
                self.assertEqual(each.pdu_arrivals(event_id), 1, f"{event_id} at {each.server_name}")
        received = {device: content for c in to_device_fillers(remote) for device, content in
                    c["messages"][target].items()}
        self.assertEqual(received, fillers)
        log = synapse.log()
        self.assertEqual(log.count("are not yet acknowledged by southbridge"), 1, "one line when the buffer fills")
        self.assertEqual(log.count("below max_buffer_bytes again"), 1, "one line when it has room again")
        self.assertIn("1 typing, presence and receipt updates were dropped meanwhile", log)


def to_device_fillers(remote: FakeHomeserver) -> list[dict]:
    return [c for c in remote.edus_of_type("m.direct_to_device") if c.get("type") == "m.southbridge.filler"]


if __name__ == "__main__":
    unittest.main()
