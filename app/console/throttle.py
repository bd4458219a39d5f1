"""Throttling wrong console tokens: a client that keeps guessing is made to wait.

Per client address, at most ``allowed`` wrong tokens in a sliding ``window_ms``; past that,
every sign-in attempt is refused (HTTP 429) until the oldest failure leaves the window. The
table of addresses is bounded, oldest entries evicted first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

from app.platform.clock import now_ms

__all__ = ["SignInThrottle"]


class SignInThrottle:
    def __init__(self, allowed: int = 5, window_ms: int = 60_000, max_clients: int = 10_000,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self.allowed = allowed
        self.window_ms = window_ms
        self.max_clients = max_clients
        self.clock_ms = clock_ms
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()

    def _recent(self, client: str) -> deque[int]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        horizon = self.clock_ms() - self.window_ms
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures

    def wait_ms(self, client: str) -> int:
        """0 when ``client`` may try a token now, else how long it must wait."""
        failures = self._recent(client)
        if len(failures) < self.allowed:
            return 0
        return failures[0] + self.window_ms - self.clock_ms()

    def record_failure(self, client: str) -> None:
        """Count one wrong token from ``client``."""
        failures = self._recent(client)
        failures.append(self.clock_ms())
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def record_success(self, client: str) -> None:
        """A right token clears the client's failures."""
        self._failures.pop(client, None)
