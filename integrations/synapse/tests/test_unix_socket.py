"""The module hands Synapse's federation to southbridge over a unix socket
(`ingest: "unix:/…/ingest.sock"`, southbridge's `ingest.listen = "unix:/…"`): the real
Synapse, the southbridge binary and fake remote homeservers, on loopback."""

from __future__ import annotations

import unittest

from .support.deployment import Deployment, quoted
from .support.waiting import wait_for

REMOTES = 2
DELIVERY_TIMEOUT = 60


class IngestOverUnixSocketTests(unittest.TestCase):
    deployment: Deployment

    @classmethod
    def setUpClass(cls) -> None:
        cls.deployment = Deployment(remotes=REMOTES, southbridge_unix_socket=True)
        try:
            cls.synapse = cls.deployment.synapse
            cls.user_id, cls.token, _ = cls.synapse.register("alice")
            cls.room_id = cls.deployment.create_room_joined_by_remotes(cls.token)
        except BaseException:
            cls.deployment.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.deployment.close()

    def test_a_message_and_an_edu_arrive_through_the_unix_socket(self) -> None:
        remotes = self.deployment.remotes
        socket_path = self.deployment.southbridge.socket_path
        self.assertIn(f"hands its outbound federation to southbridge at unix:{socket_path}", self.synapse.log())
        handed_over_before = self.synapse.metric('southbridge_synapse_ingest_requests_total{outcome="accepted"}')
        event_id = self.synapse.send_message(self.token, self.room_id, "over-unix", "over the unix socket")
        self.synapse.request("PUT", f"/_matrix/client/v3/rooms/{quoted(self.room_id)}/typing/{quoted(self.user_id)}",
                             {"typing": True, "timeout": 30000}, self.token)

        self.deployment.wait_until_every_remote_has([event_id], DELIVERY_TIMEOUT)
        wait_for(lambda: all(any(c.get("room_id") == self.room_id and c.get("user_id") == self.user_id
                                 and c.get("typing") for c in r.edus_of_type("m.typing")) for r in remotes),
                 DELIVERY_TIMEOUT, "m.typing at every remote")
        for remote in remotes:
            self.assertEqual(remote.pdu_arrivals(event_id), 1, remote.server_name)
            self.assertEqual(remote.forged(), [], remote.server_name)
        self.assertGreater(
            self.synapse.metric('southbridge_synapse_ingest_requests_total{outcome="accepted"}'), handed_over_before)
        self.assertEqual(self.synapse.metric("southbridge_synapse_ingest_unreachable"), 0)


if __name__ == "__main__":
    unittest.main()
