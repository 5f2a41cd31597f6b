"""A whole deployment on loopback: Synapse with the module, southbridge, and fake remote
homeservers joined to one room over federation."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from typing import Any

import signedjson.key

from .pki import TestCertificateAuthority
from .processes import SYNAPSE_NAME, Southbridge, Synapse, write_signing_key
from .remote import FakeHomeserver
from .waiting import wait_for


class Deployment:
    def __init__(self, remotes: int, with_module: bool = True, module_config: dict[str, Any] | None = None,
                 synapse_cpus: list[int] | None = None, southbridge_cpus: list[int] | None = None,
                 southbridge_retry_ms: tuple[int, int] = (200, 1000), southbridge_unix_socket: bool = False,
                 synapse_config: dict[str, Any] | None = None) -> None:
        """`southbridge_retry_ms`: southbridge's first and longest wait before retrying a
        server that failed (short, so that the tests' outages end quickly).
        `southbridge_unix_socket`: southbridge's ingest API listens on a unix socket, and the
        module's `ingest` names it. `synapse_config`: homeserver.yaml settings that replace
        the tests' defaults."""
        self.directory = tempfile.mkdtemp(prefix="southbridge-synapse-")
        self.authority = TestCertificateAuthority()
        self.ca_path = os.path.join(self.directory, "ca.pem")
        self.authority.write_certificate(self.ca_path)
        self.signing_key_path = os.path.join(self.directory, "synapse.signing.key")
        # Synapse's, which southbridge signs with too
        self.signing_key = write_signing_key(self.signing_key_path)
        verify_key = signedjson.key.get_verify_key(self.signing_key)
        self.southbridge_cpus = southbridge_cpus
        self.synapse_cpus = synapse_cpus
        self.remotes: list[FakeHomeserver] = []
        self.southbridge: Southbridge | None = None
        self.synapse: Synapse | None = None
        try:
            self.remotes = [FakeHomeserver(self.authority, self.directory, index, SYNAPSE_NAME, verify_key)
                            for index in range(remotes)]
            config = None
            if with_module:
                self.southbridge = Southbridge(self.directory, self.signing_key_path, self.ca_path,
                                               *southbridge_retry_ms, unix_socket=southbridge_unix_socket)
                self.southbridge.start(cpus=southbridge_cpus)
                config = {"ingest": self.southbridge.ingest_url, "token_file": self.southbridge.token_path}
                config.update(module_config or {})
            self.synapse = Synapse(self.directory, self.ca_path, self.signing_key_path, config, synapse_config)
            self.synapse.start(cpus=synapse_cpus)
        except BaseException:
            self.close()
            raise

    @property
    def remote_ports(self) -> set[int]:
        return {remote.port for remote in self.remotes}

    def create_room_joined_by_remotes(self, token: str) -> str:
        room_id = self.synapse.request("POST", "/_matrix/client/v3/createRoom",
                                       {"preset": "public_chat", "room_version": "10"}, token)["room_id"]
        for index, remote in enumerate(self.remotes):
            remote.join(self.synapse.federation_address, SYNAPSE_NAME, room_id, f"remote{index}")
        return room_id

    def wait_until_every_remote_has(self, event_ids: list[str], timeout: float) -> None:
        def everywhere() -> bool:
            return all(remote.pdu_arrivals(event_id) > 0 for remote in self.remotes for event_id in event_ids)
        missing = lambda: sum(1 for r in self.remotes for e in event_ids if r.pdu_arrivals(e) == 0)  # noqa: E731
        try:
            wait_for(everywhere, timeout, f"{len(event_ids)} events at {len(self.remotes)} remote servers")
        except AssertionError as error:
            raise AssertionError(f"{error}; {missing()} arrivals missing") from None

    def close(self) -> None:
        if self.synapse:
            self.synapse.stop()
        if self.southbridge:
            self.southbridge.stop()
        for remote in self.remotes:
            remote.stop()
        if os.environ.get("SOUTHBRIDGE_KEEP_TEST_FILES"):
            print(f"test files kept in {self.directory}")
        else:
            shutil.rmtree(self.directory, ignore_errors=True)


def quoted(value: str) -> str:
    return urllib.parse.quote(value, safe="")
