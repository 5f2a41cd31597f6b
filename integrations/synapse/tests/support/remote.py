"""A fake remote homeserver on loopback: it really joins rooms on Synapse over federation
(`make_join`, `send_join`, with events built, hashed and signed by Synapse's own library)
and records every transaction sent to it, checking its X-Matrix signature.

Every remote serves from one asyncio loop on one thread, sharing one certificate: a room of
500 remotes is 500 listening sockets, not 500 threads and 500 keys."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
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
    # How many times each event arrived, counted once on receipt: recomputing event IDs on
    # every poll costs seconds per poll in a room of hundreds of servers.
    pdu_arrivals: dict[str, int] = field(default_factory=dict)


class _RemoteLoop:
    """The one asyncio loop, on its own thread, that every fake remote serves from."""

    _shared: "_RemoteLoop | None" = None
    _creating = threading.Lock()

    @classmethod
    def shared(cls) -> "_RemoteLoop":
        with cls._creating:
            if cls._shared is None:
                cls._shared = _RemoteLoop()
            return cls._shared

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="fake remotes", daemon=True).start()

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


_server_contexts: dict[tuple[int, str], ssl.SSLContext] = {}


def _server_context(authority: TestCertificateAuthority, directory: str) -> ssl.SSLContext:
    """One loopback certificate per authority and directory, shared by every remote."""
    key = (id(authority), directory)
    if key not in _server_contexts:
        certificate, private_key = f"{directory}/remote.pem", f"{directory}/remote.key"
        authority.issue_loopback(certificate, private_key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, private_key)
        _server_contexts[key] = context
    return _server_contexts[key]


class FakeHomeserver:
    """One remote server named `127.0.0.1:<port>`, trusting transactions signed by
    `origin_name` with `origin_verify_key`."""

    def __init__(self, authority: TestCertificateAuthority, directory: str, index: int,
                 origin_name: str, origin_verify_key: Any) -> None:
        self._lock = threading.Lock()
        self.recording = Recording()
        self._refusing_transactions = False
        self._hanging = False
        self.origin_name = origin_name
        self.origin_verify_key = origin_verify_key
        self.signing_key = signedjson.key.generate_signing_key(f"r{index}")
        self._remote_loop = _RemoteLoop.shared()
        self._connections: set[asyncio.StreamWriter] = set()
        self._stopped: asyncio.Event | None = None
        self._server = self._remote_loop.run(self._listen(_server_context(authority, directory)))
        self.port = self._server.sockets[0].getsockname()[1]
        self.server_name = f"127.0.0.1:{self.port}"

    async def _listen(self, context: ssl.SSLContext) -> asyncio.AbstractServer:
        self._stopped = asyncio.Event()
        return await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context, backlog=1024)

    def stop(self) -> None:
        """Closes the listener and every connection; requests held by `hang` end unanswered."""
        self._remote_loop.run(self._close())

    async def _close(self) -> None:
        self._server.close()
        self._stopped.set()
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    # What arrived

    def pdu_arrivals(self, event_id: str) -> int:
        with self._lock:
            return self.recording.pdu_arrivals.get(event_id, 0)

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

    def hang(self) -> None:
        """From now on every request is read and never answered, as by a blackholed server,
        until the server stops."""
        with self._lock:
            self._hanging = True

    # Serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive, one request at a time per connection."""
        self._connections.add(writer)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *header_lines = head.split("\r\n")
                method, target = request_line.split(" ")[:2]
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                with self._lock:
                    self.recording.user_agents.append(headers.get("user-agent", ""))
                    hanging = self._hanging
                if hanging:
                    await self._stopped.wait()
                    return
                status, answer = self._answer(method, target, headers, body)
                writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {len(answer)}\r\n\r\n"
                             .encode() + answer)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError, ValueError):
            pass  # the client went away or sent something this test server does not speak
        finally:
            self._connections.discard(writer)
            writer.transport.abort()

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if method == "GET" and target.startswith("/_matrix/key/v2/server"):
            return 200, self.key_document()
        if method == "PUT" and target.startswith("/_matrix/federation/v1/send/"):
            return self.receive_transaction(target, headers.get("authorization", ""),
                                            headers.get("user-agent", ""), body)
        return 404, b'{"errcode":"M_UNRECOGNIZED","error":"not served by the test remote"}'

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
        event_ids = [_event_id(p) for p in content.get("pdus", [])]
        with self._lock:
            self.recording.transactions.append(ReceivedTransaction(
                txn_id, user_agent, params["origin"], content.get("pdus", []), content.get("edus", []),
                int(time.time() * 1000)))
            for event_id in event_ids:
                self.recording.pdu_arrivals[event_id] = self.recording.pdu_arrivals.get(event_id, 0) + 1
        results = {event_id: {} for event_id in event_ids}
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


_REASONS = {200: "OK", 401: "Unauthorized", 404: "Not Found", 503: "Service Unavailable"}
