"""How the module packs presence states into EDUs and names EDUs in its log."""

from __future__ import annotations

import unittest

from canonicaljson import encode_canonical_json

from southbridge_synapse.federation import describe_edu, pack_presence

MAX_EDU_CONTENT_BYTES = 65_536


def state(user: int, status_msg: str = "") -> dict:
    formatted = {"presence": "online", "user_id": f"@u{user}:synapse.test", "last_active_ago": 1234,
                 "currently_active": True}
    if status_msg:
        formatted["status_msg"] = status_msg
    return formatted


class PresencePackingTests(unittest.TestCase):
    def test_at_most_fifty_states_in_an_edu_in_order(self) -> None:
        states = [state(n) for n in range(120)]
        pushes = pack_presence(states)
        self.assertEqual([len(push) for push in pushes], [50, 50, 20])
        self.assertEqual([s for push in pushes for s in push], states)

    def test_states_with_long_status_messages_fill_edus_southbridge_takes(self) -> None:
        # 50 users with 2,000-character status messages: too large for one EDU together.
        states = [state(n, "é" * 2000) for n in range(50)]
        pushes = pack_presence(states)
        self.assertGreater(len(pushes), 1)
        self.assertEqual([s for push in pushes for s in push], states)
        for push in pushes:
            self.assertLessEqual(len(encode_canonical_json({"push": push})), MAX_EDU_CONTENT_BYTES)

    def test_a_state_too_large_for_any_edu_goes_alone(self) -> None:
        states = [state(0), state(1, "y" * MAX_EDU_CONTENT_BYTES), state(2)]
        self.assertEqual(pack_presence(states), [[states[0]], [states[1]], [states[2]]])

    def test_states_that_fill_an_edu_exactly_share_it(self) -> None:
        first = state(0, "a")
        room_left = MAX_EDU_CONTENT_BYTES - len(encode_canonical_json({"push": [first, state(1, "a")]}))
        exact = [first, state(1, "a" * (1 + room_left))]
        self.assertEqual(len(encode_canonical_json({"push": exact})), MAX_EDU_CONTENT_BYTES)
        self.assertEqual(pack_presence(exact), [exact])
        one_more = [first, state(1, "a" * (2 + room_left))]
        self.assertEqual(pack_presence(one_more), [[one_more[0]], [one_more[1]]])


class EduDescriptionTests(unittest.TestCase):
    def test_each_kind_is_named_by_what_identifies_it(self) -> None:
        cases = [
            ("m.typing", {"room_id": "!r:s", "user_id": "@a:s", "typing": True}, "m.typing EDU (@a:s in !r:s)"),
            ("m.presence", {"push": [state(1), state(2), state(3)]},
             "m.presence EDU (presence of @u1:synapse.test and 2 more users)"),
            ("m.receipt", {"!r:s": {"m.read": {}}}, "m.receipt EDU (receipts in !r:s)"),
            ("m.direct_to_device", {"sender": "@a:s", "type": "m.x", "message_id": "abc", "messages": {}},
             "m.direct_to_device EDU (message_id abc from @a:s)"),
            ("m.device_list_update", {"user_id": "@a:s", "device_id": "D", "stream_id": 7},
             "m.device_list_update EDU (@a:s device D, stream_id 7)"),
            ("m.signing_key_update", {"user_id": "@a:s"}, "m.signing_key_update EDU (@a:s)"),
            ("org.example.custom", {"x": 1}, "org.example.custom EDU"),
            ("m.presence", {"push": []}, "m.presence EDU (presence of None)"),
            ("m.typing", "not an object", "m.typing EDU (None in None)"),
        ]
        for edu_type, content, expected in cases:
            with self.subTest(edu_type=edu_type):
                self.assertEqual(describe_edu(edu_type, content), expected)


if __name__ == "__main__":
    unittest.main()
