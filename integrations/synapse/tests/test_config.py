"""Every bad module setting is refused with an error naming the key and the problem."""

from __future__ import annotations

import os
import tempfile
import unittest

from southbridge_synapse.config import ConfigError, parse_config
from southbridge_synapse.versions import UntestedSynapseVersion, check_synapse_version


class ConfigTests(unittest.TestCase):
    def setUp(self) -> None:
        handle, self.token_file = tempfile.mkstemp()
        os.write(handle, b"secret-token\n")
        os.close(handle)
        self.addCleanup(os.unlink, self.token_file)

    def refused(self, config: object) -> str:
        with self.assertRaises(ConfigError) as raised:
            parse_config(config)
        return str(raised.exception)

    def test_a_tcp_and_a_unix_socket_address(self) -> None:
        tcp = parse_config({"ingest": "http://127.0.0.1:8009", "token_file": self.token_file})
        self.assertEqual((tcp.ingest.host, tcp.ingest.port, tcp.token), ("127.0.0.1", 8009, "secret-token"))
        unix = parse_config({"ingest": "unix:/run/southbridge/ingest.sock", "token_file": self.token_file})
        self.assertEqual(unix.ingest.unix_path, "/run/southbridge/ingest.sock")
        self.assertFalse(unix.allow_untested_synapse_version)
        self.assertEqual(unix.inbound_wake_interval_ms, 60_000)

    def test_bad_values_name_the_key(self) -> None:
        cases = [
            ({"token_file": self.token_file}, "config ingest: required"),
            ({"ingest": "http://127.0.0.1:8009"}, "config token_file: required"),
            ({"ingest": "https://127.0.0.1:8009", "token_file": self.token_file}, "config ingest: must start with http:// or unix:"),
            ({"ingest": "http://matrix.org:8009", "token_file": self.token_file}, "config ingest: must be a loopback address"),
            ({"ingest": "http://127.0.0.1", "token_file": self.token_file}, "config ingest: needs a port"),
            ({"ingest": "http://127.0.0.1:99999", "token_file": self.token_file}, "config ingest: the port must be a number"),
            ({"ingest": "unix:run/ingest.sock", "token_file": self.token_file}, "config ingest: a unix socket path must be absolute"),
            ({"ingest": 8009, "token_file": self.token_file}, "config ingest: must be a string"),
            ({"ingest": "http://127.0.0.1:8009", "token_file": "/nonexistent/token"}, "config token_file: cannot read /nonexistent/token"),
            ({"ingest": "http://127.0.0.1:8009", "token_file": self.token_file, "max_batch_units": 0}, "config max_batch_units: must be a whole number from 1 to 1000, got 0"),
            ({"ingest": "http://127.0.0.1:8009", "token_file": self.token_file, "inbound_wake_interval_ms": 500}, "config inbound_wake_interval_ms: must be a whole number from 1000 to 86400000, got 500"),
            ({"ingest": "http://127.0.0.1:8009", "token_file": self.token_file, "allow_untested_synapse_version": "yes"}, "config allow_untested_synapse_version: must be true or false"),
            ({"ingest": "http://127.0.0.1:8009", "token_file": self.token_file, "ingset": 1}, "config ingset: unknown key"),
            ({"ingest": "http://127.0.0.1:8009", "token_file": self.token_file, "retry_initial_ms": 5000, "retry_max_ms": 1000}, "config retry_max_ms: must be at least retry_initial_ms (5000)"),
            ("ingest", "config config: must be a mapping"),
        ]
        for config, message in cases:
            with self.subTest(config=config):
                self.assertIn(message, self.refused(config))

    def test_an_empty_token_file(self) -> None:
        with open(self.token_file, "w"):
            pass
        self.assertIn(f"config token_file: {self.token_file} is empty",
                      self.refused({"ingest": "http://127.0.0.1:8009", "token_file": self.token_file}))

    def test_untested_versions_are_refused_unless_allowed(self) -> None:
        self.assertTrue(check_synapse_version("1.163.2", False))
        with self.assertRaises(UntestedSynapseVersion):
            check_synapse_version("1.164.0", False)
        self.assertFalse(check_synapse_version("1.164.0", True))


if __name__ == "__main__":
    unittest.main()
