"""Waiting for a condition with a bound, instead of sleeping for a guess."""

from __future__ import annotations

import socket
import time
from typing import Callable, TypeVar

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    pass


def wait_for(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.02) -> T:
    """Returns the first truthy value of `condition()`; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # a peer still starting refuses connections
            last_error = error
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise ConditionTimeout(f"not within {timeout:.0f} s: {what}{detail}")
        time.sleep(poll)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
