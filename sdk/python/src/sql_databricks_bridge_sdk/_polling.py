"""Waiting for something to finish: polls with an interval that grows up to a cap."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from .errors import BridgeTimeoutError

T = TypeVar("T")

#: How much the interval between two polls grows each time.
BACKOFF_FACTOR = 1.5


def check_wait_args(timeout: float, poll_interval: float, max_interval: float) -> None:
    if timeout is None or timeout < 0:
        raise ValueError("timeout: must be 0 or more seconds")
    if poll_interval is None or poll_interval <= 0:
        raise ValueError("poll_interval: must be positive")
    if max_interval is None or max_interval < poll_interval:
        raise ValueError("max_interval: must be at least poll_interval")


def poll_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    status_of: Callable[[T], str],
    what: str,
    *,
    timeout: float,
    poll_interval: float,
    max_interval: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Calls ``fetch`` until ``done`` holds for its result and returns that result; raises
    :class:`BridgeTimeoutError` once ``timeout`` seconds have passed."""
    check_wait_args(timeout, poll_interval, max_interval)
    deadline = clock() + timeout
    interval = poll_interval
    while True:
        current = fetch()
        if done(current):
            return current
        remaining = deadline - clock()
        if remaining <= 0:
            status = status_of(current)
            raise BridgeTimeoutError(
                f"{what} did not finish within {timeout:g} s (last status: {status})",
                last_status=status,
            )
        sleep(min(interval, remaining))
        interval = min(interval * BACKOFF_FACTOR, max_interval)
