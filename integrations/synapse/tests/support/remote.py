"""A fake remote homeserver on loopback: it really joins rooms on Synapse over federation
(`make_join`, `send_join`, with events built, hashed and signed by Synapse's own library)
and records every transaction sent to it, checking its X-Matrix signature."""

from __future__ import annotations

import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import signedjson.key
import signedjson.sign
from canonicaljson import encode_canonical_json
from unpaddedbase64 import encode_base64

from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.crypto.event_signing import add_hashes_and_signatures
from synapse.events import make_event_from_dict

from .pki import TestCertificateAuthority

_X_MATRIX_PARAM = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,]*)')


def parse_x_matrix(header: str) -> dict[str, str]:
    if not header.startswith("X-Matrix "):
        raise ValueError(f"not X-Matrix: {header[:40]!r}")
    params = {}
    for name, value in _X_MATRIX_PARAM.findall(header[len("X-Matrix "):]):
        params[name] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\") if value.startswith('"') else value
    return params


def x_matrix_header(origin: str, destination: str, key: Any, method: str, uri: str, content: Any | None) -> str:
    request: dict[str, Any] = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        request["content"] = content
    signed = signedjson.sign.sign_json(request, origin, key)
    key_id = f"ed25519:{key.version}"
    signature = signed["signatures"][origin][key_id]
    return f'X-Matrix origin="{origin}",destination="{destination}",key="{key_id}",sig="{signature}"'


@dataclass
class ReceivedTransaction:
    txn_id: str
    user_agent: str
    origin: str
    pdus: list[dict]
    edus: list[dict]
    # When it arrived, in milliseconds since the epoch.
    received_at_ms: int = 0


@dataclass
class Recording:
    transactions: list[ReceivedTransaction] = field(default_factory=list)
    # Every request whose X-Matrix signature did not verify, or that had none.
    unsigned_or_forged: list[str] = field(default_factory=list)
    # User agents of every request, in order.
    user_agents: list[str] = field(default_factory=list)
    # Transactions answered 503 while refusing them.
    refused_transactions: int = 0


class FakeHomeserver:
    """One remote server named `127.0.0.1:<port>`, trusting transactions signed by
    `origin_name` with `origin_verify_key`."""

    def __init__(self, authority: TestCertificateAuthority, directory: str, index: int,
                 origin_name: str, origin_verify_key: Any) -> None:
        self._lock = threading.Lock()
        self.recording = Recording()
        self._refusing_transactions = False
        self.origin_name = origin_name
        self.origin_verify_key = origin_verify_key
        self.signing_key = signedjson.key.generate_signing_key(f"r{index}")
        certificate = f"{directory}/remote-{index}.pem"
        private_key = f"{directory}/remote-{index}.key"
        authority.issue_loopback(certificate, private_key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, private_key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.server_name = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.server_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # What arrived

    def pdu_arrivals(self, event_id: str) -> int:
        with self._lock:
            return sum(1 for t in self.recording.transactions for p in t.pdus if _event_id(p) == event_id)

    def pdu(self, event_id: str) -> dict:
        """The first PDU received with `event_id`, as it arrived."""
        with self._lock:
            return next(p for t in self.recording.transactions for p in t.pdus if _event_id(p) == event_id)

    def edus_of_type(self, edu_type: str) -> list[dict]:
        with self._lock:
            return [e["content"] for t in self.recording.transactions for e in t.edus if e.get("edu_type") == edu_type]

    def edus_with_arrival(self, edu_type: str) -> list[tuple[dict, int]]:
        """The content of every EDU of `edu_type` with when its transaction arrived (ms since the epoch)."""
        with self._lock:
            return [(e["content"], t.received_at_ms) for t in self.recording.transactions for e in t.edus
                    if e.get("edu_type") == edu_type]

    def transactions(self) -> list[ReceivedTransaction]:
        with self._lock:
            return list(self.recording.transactions)

    def forged(self) -> list[str]:
        with self._lock:
            return list(self.recording.unsigned_or_forged)

    def user_agents(self) -> list[str]:
        with self._lock:
            return list(self.recording.user_agents)

    def refused_transactions(self) -> int:
        with self._lock:
            return self.recording.refused_transactions

    def refuse_transactions(self, refusing: bool) -> None:
        """While refusing, every transaction is answered 503, as by a server that is down."""
        with self._lock:
            self._refusing_transactions = refusing

    # Requests to Synapse over federation

    def query_profile(self, synapse_federation: tuple[str, int], synapse_name: str, user_id: str) -> Any:
        """An authenticated federation request to Synapse that changes nothing."""
        return self._federation_request(
            synapse_federation, synapse_name, "GET",
            f"/_matrix/federation/v1/query/profile?user_id={urllib.parse.quote(user_id, safe='')}", None)

    # Joining a room on Synapse over federation

    def join(self, synapse_federation: tuple[str, int], synapse_name: str, room_id: str, localpart: str) -> str:
        """Joins `@localpart:<this server>` to `room_id` through Synapse's make_join and
        send_join; returns the join event's ID."""
        user_id = f"@{localpart}:{self.server_name}"
        quoted_room = urllib.parse.quote(room_id, safe="")
        template = self._federation_request(
            synapse_federation, synapse_name, "GET",
            f"/_matrix/federation/v1/make_join/{quoted_room}/{urllib.parse.quote(user_id, safe='')}?ver=10", None)
        room_version = KNOWN_ROOM_VERSIONS[template["room_version"]]
        event = dict(template["event"])
        event["origin_server_ts"] = int(time.time() * 1000)
        event["origin"] = self.server_name
        add_hashes_and_signatures(room_version, event, self.server_name, self.signing_key)
        event_id = make_event_from_dict(event, room_version).event_id
        self._federation_request(
            synapse_federation, synapse_name, "PUT",
            f"/_matrix/federation/v2/send_join/{quoted_room}/{urllib.parse.quote(event_id, safe='')}", event)
        return event_id

    def _federation_request(self, address: tuple[str, int], destination: str, method: str, uri: str,
                            content: Any | None) -> Any:
        return signed_federation_request(address, self.server_name, self.signing_key, destination, method, uri,
                                         content)

    # Serving

    def key_document(self) -> bytes:
        verify_key = signedjson.key.get_verify_key(self.signing_key)
        document = {
            "server_name": self.server_name,
            "valid_until_ts": int(time.time() * 1000) + 24 * 3600 * 1000,
            "verify_keys": {f"ed25519:{self.signing_key.version}": {"key": encode_base64(verify_key.encode())}},
            "old_verify_keys": {},
        }
        return encode_canonical_json(signedjson.sign.sign_json(document, self.server_name, self.signing_key))

    def receive_transaction(self, path: str, authorization: str, user_agent: str, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            if self._refusing_transactions:
                self.recording.refused_transactions += 1
                return 503, b'{"errcode":"M_UNKNOWN","error":"the test remote refuses transactions"}'
        content = json.loads(body)
        try:
            params = parse_x_matrix(authorization)
            signed = {"method": "PUT", "uri": path, "origin": params["origin"],
                      "destination": params["destination"], "content": content,
                      "signatures": {params["origin"]: {params["key"]: params["sig"]}}}
            if params["origin"] != self.origin_name or params["destination"] != self.server_name:
                raise ValueError(f"origin {params['origin']!r}, destination {params['destination']!r}")
            signedjson.sign.verify_signed_json(signed, self.origin_name, self.origin_verify_key)
        except Exception as error:
            with self._lock:
                self.recording.unsigned_or_forged.append(f"{path}: {error}")
            return 401, b'{"errcode":"M_UNAUTHORIZED","error":"bad X-Matrix signature"}'
        txn_id = urllib.parse.unquote(path.rsplit("/", 1)[-1])
        with self._lock:
            self.recording.transactions.append(ReceivedTransaction(
                txn_id, user_agent, params["origin"], content.get("pdus", []), content.get("edus", []),
                int(time.time() * 1000)))
        results = {_event_id(p): {} for p in content.get("pdus", [])}
        return 200, json.dumps({"pdus": results}).encode()


def signed_federation_request(address: tuple[str, int], origin: str, key: Any, destination: str, method: str,
                              uri: str, content: Any | None) -> Any:
    """A federation request to `address` signed as `origin` with `key`; its JSON answer,
    or an AssertionError for any status but 200."""
    body = encode_canonical_json(content) if content is not None else None
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        headers = {"Authorization": x_matrix_header(origin, destination, key, method, uri, content),
                   "Content-Type": "application/json"}
        connection.request(method, uri, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise AssertionError(f"{method} {uri} answered {response.status}: {answer[:300]!r}")
    return json.loads(answer)


def _event_id(pdu: dict) -> str:
    room_version = KNOWN_ROOM_VERSIONS["10"]
    return make_event_from_dict(pdu, room_version).event_id


def _handler_for(server: FakeHomeserver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _note_user_agent(self) -> None:
            with server._lock:
                server.recording.user_agents.append(self.headers.get("User-Agent", ""))

        def do_GET(self) -> None:
            self._note_user_agent()
            if self.path.startswith("/_matrix/key/v2/server"):
                self._answer(200, server.key_document())
            else:
                self._answer(404, b'{"errcode":"M_UNRECOGNIZED","error":"not served by the test remote"}')

        def do_PUT(self) -> None:
            self._note_user_agent()
            body = self._body()
            if self.path.startswith("/_matrix/federation/v1/send/"):
                status, answer = server.receive_transaction(
                    self.path, self.headers.get("Authorization", ""), self.headers.get("User-Agent", ""), body)
                self._answer(status, answer)
            else:
                self._answer(404, b'{"errcode":"M_UNRECOGNIZED","error":"not served by the test remote"}')

        def do_POST(self) -> None:
            self._note_user_agent()
            self._body()
            self._answer(404, b'{"errcode":"M_UNRECOGNIZED","error":"not served by the test remote"}')

    return Handler
