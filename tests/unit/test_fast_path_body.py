"""The raw ASGI path's body read: a body in several messages, too large, or cut short."""

from __future__ import annotations

from typing import Any

from app.ingress.webhook_fast_path import _read_body
from app.ingress.webhook_routes import MAX_BODY_BYTES


def _receiver(*messages: dict[str, Any]) -> Any:
    waiting = list(messages)

    async def receive() -> dict[str, Any]:
        return waiting.pop(0)

    return receive


async def test_a_body_in_several_messages_is_joined() -> None:
    first = {"type": "http.request", "body": b"ab", "more_body": True}
    receive = _receiver({"type": "http.request", "body": b"cd", "more_body": True},
                        {"type": "http.request", "body": b"e"})
    assert await _read_body(receive, first) == b"abcde"


async def test_a_body_larger_than_the_limit_is_refused_whatever_its_messages() -> None:
    first = {"type": "http.request", "body": b"x" * MAX_BODY_BYTES, "more_body": True}
    receive = _receiver({"type": "http.request", "body": b"y"})
    assert await _read_body(receive, first) is None
    assert await _read_body(_receiver(), {"type": "http.request",
                                          "body": b"x" * (MAX_BODY_BYTES + 1)}) is None


async def test_a_client_that_went_away_leaves_what_was_read() -> None:
    first = {"type": "http.request", "body": b"ab", "more_body": True}
    assert await _read_body(_receiver({"type": "http.disconnect"}), first) == b"ab"
    assert await _read_body(_receiver(), {"type": "http.disconnect"}) == b""
