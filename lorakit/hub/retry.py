"""Retry transient failures (timeouts, truncated bodies, 5xx, 429) with exponential backoff.

A 429's ``Retry-After`` sets the wait. A DNS failure or refused connection is not retried: it is one
line at once (see ``hub_errors.is_unreachable``).
"""

from __future__ import annotations

import random
import threading
from typing import Callable, TypeVar

from lorakit.hub.hub_errors import is_transient, retry_after

T = TypeVar("T")

ATTEMPTS = 4  # the first try and three retries
BASE_DELAY = 1.0  # seconds before the first retry; doubled after each failure (tests lower it)
MAX_DELAY = 30.0
MAX_RETRY_AFTER = 120.0  # longer waits asked by the hub fail instead, with the hub's message


class DownloadCancelled(Exception):
    """Raised inside worker threads once the user interrupted the command."""


def call_with_retries(
    action: Callable[[], T],
    *,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
    cancelled: threading.Event | None = None,
) -> T:
    """Run ``action``; on a transient error wait ``BASE_DELAY * 2**n`` (with jitter) and try again."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except DownloadCancelled:
            raise
        except Exception as error:
            if attempt == ATTEMPTS or not is_transient(error):
                raise
            # Jitter keeps parallel workers from hammering a recovering server in lockstep.
            delay = min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1)) * (0.75 + random.random() / 2)
            asked = retry_after(error)  # a rate limit says how long to wait: wait that, within reason
            if asked is not None:
                delay = min(MAX_RETRY_AFTER, asked)
            if on_retry is not None:
                on_retry(attempt, delay, error)
            if cancelled is not None:
                if cancelled.wait(delay):
                    raise DownloadCancelled() from error
            else:
                threading.Event().wait(delay)
    raise AssertionError("unreachable")
