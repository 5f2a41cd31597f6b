"""The limit on waking a remote server because it sent Synapse a request."""

from __future__ import annotations

import unittest
from unittest import mock

from southbridge_synapse.federation import SouthbridgeFederation
from southbridge_synapse.wakeups import WakeLimiter


class FakeClock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


class WakeLimiterTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = FakeClock()
        self.limiter = WakeLimiter(interval_s=60, capacity=3, now=self.clock)

    def test_once_per_interval_for_each_server(self) -> None:
        self.assertTrue(self.limiter.allow("a.example"))
        self.assertTrue(self.limiter.allow("b.example"))
        self.clock.seconds += 59.9
        self.assertFalse(self.limiter.allow("a.example"))
        self.assertFalse(self.limiter.allow("b.example"))
        self.clock.seconds += 0.1
        self.assertTrue(self.limiter.allow("a.example"))
        self.assertFalse(self.limiter.allow("a.example"))

    def test_remembers_only_servers_woken_within_the_interval(self) -> None:
        for name in ("a.example", "b.example", "c.example"):
            self.assertTrue(self.limiter.allow(name))
        self.clock.seconds += 60
        self.assertTrue(self.limiter.allow("d.example"))
        self.assertEqual(len(self.limiter), 1)

    def test_past_its_capacity_it_forgets_the_server_woken_longest_ago(self) -> None:
        for name in ("a.example", "b.example", "c.example"):
            self.assertTrue(self.limiter.allow(name))
            self.clock.seconds += 1
        self.assertTrue(self.limiter.allow("d.example"))
        self.assertEqual(len(self.limiter), 3)
        self.assertFalse(self.limiter.allow("b.example"))
        self.assertFalse(self.limiter.allow("c.example"))
        self.assertFalse(self.limiter.allow("d.example"))
        # Forgotten for room, so let through again early.
        self.assertTrue(self.limiter.allow("a.example"))
        self.assertEqual(len(self.limiter), 3)

    def test_a_forgotten_server_is_let_through_at_once(self) -> None:
        self.assertTrue(self.limiter.allow("a.example"))
        self.limiter.forget("a.example")
        self.assertTrue(self.limiter.allow("a.example"))
        self.limiter.forget("never.example")

    def test_memory_stays_bounded_however_many_servers_ask(self) -> None:
        limiter = WakeLimiter(interval_s=60, capacity=1000, now=self.clock)
        for index in range(100_000):
            limiter.allow(f"server{index}.example")
        self.assertEqual(len(limiter), 1000)


class InboundRequestWakeTests(unittest.TestCase):
    """What the module does once Synapse authenticated a request, without starting Synapse."""

    def setUp(self) -> None:
        hs = mock.Mock(hostname="synapse.test")
        hs.is_mine_server_name = lambda name: name == "synapse.test"
        self.api = mock.Mock()
        self.federation = SouthbridgeFederation(hs, self.api, mock.Mock(), mock.Mock(), inbound_wake_interval_s=60)

    def woken(self) -> list[str]:
        return [c.args[2] for c in self.api.run_as_background_process.call_args_list]

    def test_each_server_once_and_never_ourselves(self) -> None:
        for origin in ("a.example", "synapse.test", "a.example", "b.example", "a.example"):
            self.federation._on_inbound_request(origin)
        self.assertEqual(self.woken(), ["a.example", "b.example"])

    def test_past_the_wake_ups_in_flight_a_request_wakes_nothing_until_one_ends(self) -> None:
        origins = [f"server{index}.example" for index in range(101)]
        for origin in origins:
            self.federation._on_inbound_request(origin)
        self.assertEqual(self.woken(), origins[:100])
        self.federation._wakes_in_flight.discard(origins[0])
        self.federation._on_inbound_request(origins[100])
        self.assertEqual(self.woken(), origins)

    def test_a_wake_up_that_cannot_start_fails_no_request_and_is_tried_again(self) -> None:
        self.api.run_as_background_process.side_effect = RuntimeError("no reactor")
        with self.assertLogs("southbridge_synapse.federation", "ERROR") as logged:
            self.federation._on_inbound_request("a.example")
            self.federation._on_inbound_request("b.example")
        self.assertEqual(len(logged.records), 1)
        self.api.run_as_background_process.side_effect = None
        self.federation._on_inbound_request("a.example")
        self.assertEqual(self.woken()[-1], "a.example")


if __name__ == "__main__":
    unittest.main()
