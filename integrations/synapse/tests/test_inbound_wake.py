"""A remote server southbridge backs off from is tried again as soon as it sends Synapse a
federation request: the real Synapse with the module, the southbridge binary and a fake
remote homeserver, on loopback."""

from __future__ import annotations

import unittest
import urllib.parse

from .support.deployment import Deployment
from .support.processes import SYNAPSE_NAME
from .support.remote import signed_federation_request
from .support.waiting import wait_for

# southbridge's wait before retrying a server that failed: far longer than the test, so
# only a wake-up gets the remote tried again.
BACKOFF_MS = 3_600_000
# Longer than the test too, so that a second request within it certainly wakes nothing.
INBOUND_WAKE_INTERVAL_MS = 600_000
TIMEOUT = 60
INBOUND_WAKES = 'southbridge_synapse_wake_requests_total{cause="inbound_request"}'


class WakeOnInboundRequestTests(unittest.TestCase):
    deployment: Deployment

    @classmethod
    def setUpClass(cls) -> None:
        cls.deployment = Deployment(remotes=1, module_config={"inbound_wake_interval_ms": INBOUND_WAKE_INTERVAL_MS},
                                    southbridge_retry_ms=(BACKOFF_MS, BACKOFF_MS))
        try:
            cls.synapse = cls.deployment.synapse
            cls.user_id, cls.token, _ = cls.synapse.register("alice")
        except BaseException:
            cls.deployment.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.deployment.close()

    def backing_off(self) -> set[str]:
        listing = self.deployment.southbridge.get("/_southbridge/v1/destinations?state=backoff&limit=1000")
        return {destination["destination"] for destination in listing["destinations"]}

    def test_a_request_from_a_server_in_backoff_gets_what_it_is_owed_delivered(self) -> None:
        remote = self.deployment.remotes[0]
        synapse = self.synapse
        # The remote has not contacted Synapse yet: the first transaction southbridge sends
        # it is a to-device message, which it refuses, so southbridge backs off for an hour.
        remote.refuse_transactions(True)
        target = f"@bob:{remote.server_name}"
        messages = {target: {"BOBDEVICE": {"secret": "for bob"}}}
        synapse.request("PUT", "/_matrix/client/v3/sendToDevice/m.southbridge.test/wake-1", {"messages": messages},
                        self.token)
        wait_for(lambda: remote.server_name in self.backing_off(), TIMEOUT,
                 "southbridge backs off from the remote that refused its transaction")
        self.assertGreater(remote.refused_transactions(), 0)
        self.assertEqual(remote.edus_of_type("m.direct_to_device"), [])
        remote.refuse_transactions(False)

        wakes_before = synapse.metric(INBOUND_WAKES)
        remote.query_profile(synapse.federation_address, SYNAPSE_NAME, self.user_id)
        to_device = wait_for(lambda: remote.edus_of_type("m.direct_to_device"), TIMEOUT,
                             "the to-device message at the remote after its request")
        self.assertEqual(to_device[0]["messages"], messages)
        wait_for(lambda: remote.server_name not in self.backing_off(), TIMEOUT,
                 "southbridge no longer backs off from the remote")
        # The request is answered after the wake-up is counted, never before.
        self.assertEqual(synapse.metric(INBOUND_WAKES) - wakes_before, 1)

        # Within inbound_wake_interval_ms a server is not woken again, however often it asks.
        for _ in range(3):
            remote.query_profile(synapse.federation_address, SYNAPSE_NAME, self.user_id)
        self.assertEqual(synapse.metric(INBOUND_WAKES) - wakes_before, 1)

    def test_a_request_signed_by_synapse_itself_wakes_nothing(self) -> None:
        wakes_before = self.synapse.metric(INBOUND_WAKES)
        uri = f"/_matrix/federation/v1/query/profile?user_id={urllib.parse.quote(self.user_id, safe='')}"
        signed_federation_request(self.synapse.federation_address, SYNAPSE_NAME, self.deployment.signing_key,
                                  SYNAPSE_NAME, "GET", uri, None)
        self.assertEqual(self.synapse.metric(INBOUND_WAKES), wakes_before)


if __name__ == "__main__":
    unittest.main()
