"""A small HTTP/1.1 client for southbridge's ingest API, over loopback TCP or a unix socket.

It uses Twisted's `Agent` with kept-alive connections, so handing work over costs one
request on an open connection, not a connect per batch.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from io import BytesIO

from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from synapse.module_api import make_deferred_yieldable

from .config import IngestAddress


class IngestUnavailable(Exception):
    """No answer from southbridge: it is not listening, the connection broke, or it timed out."""


class IngestAnswer:
    """southbridge's status and decoded JSON body (an empty dict when the body is not JSON)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        try:
            decoded = json.loads(body) if body else {}
        except ValueError:
            decoded = {}
        self.json: dict[str, Any] = decoded if isinstance(decoded, dict) else {}
        self.raw = body

    @property
    def error(self) -> str:
        """southbridge's Matrix-style error, `errcode: error`, or the start of the body."""
        if "errcode" in self.json:
            return f"{self.json.get('errcode')}: {self.json.get('error', '')}"
        return self.raw[:200].decode("utf-8", "replace")


@implementer(IAgentEndpointFactory)
class _IngestEndpoints:
    def __init__(self, reactor: Any, address: IngestAddress) -> None:
        self._reactor = reactor
        self._address = address

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        if self._address.unix_path is not None:
            return UNIXClientEndpoint(self._reactor, self._address.unix_path)
        return HostnameEndpoint(self._reactor, self._address.host, self._address.port)


class IngestClient:
    """Sends requests to one southbridge; every method returns a Deferred."""

    def __init__(self, reactor: Any, address: IngestAddress, token: str, timeout_s: float) -> None:
        self._reactor = reactor
        self.address = address
        self._timeout_s = timeout_s
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 2
        pool.retryAutomatically = False
        pool._factory.noisy = False
        self._agent = Agent.usingEndpointFactory(reactor, _IngestEndpoints(reactor, address), pool=pool)
        if address.unix_path is not None:
            self._base = "http://southbridge"
        else:
            self._base = str(address)
        self._authorization = f"Bearer {token}".encode()

    async def send(self, txn_id: str, body: bytes) -> IngestAnswer:
        path = "/_southbridge/v1/send/" + urllib.parse.quote(txn_id, safe="")
        return await self._request(b"PUT", path, body)

    async def wake(self, destination: str) -> IngestAnswer:
        path = "/_southbridge/v1/destinations/" + urllib.parse.quote(destination, safe="") + "/wake"
        return await self._request(b"POST", path, b"")

    async def _request(self, method: bytes, path: str, body: bytes) -> IngestAnswer:
        headers = Headers(
            {
                b"Authorization": [self._authorization],
                b"Content-Type": [b"application/json"],
                b"User-Agent": [b"southbridge-synapse"],
            }
        )
        producer = FileBodyProducer(BytesIO(body)) if body else None
        try:
            request = self._agent.request(method, (self._base + path).encode(), headers, producer)
            request.addTimeout(self._timeout_s, self._reactor)
            response = await make_deferred_yieldable(request)
            reading = readBody(response)
            reading.addTimeout(self._timeout_s, self._reactor)
            content = await make_deferred_yieldable(reading)
        except Exception as error:
            raise IngestUnavailable(_describe(error)) from error
        return IngestAnswer(response.code, content)


def _describe(error: Exception) -> str:
    # Twisted wraps connection failures in lists of Failures; name the first reason.
    reasons = getattr(error, "reasons", None)
    if reasons:
        return _describe(reasons[0].value)
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
