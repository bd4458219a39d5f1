"""The replier's order per user when the runtime hands it overlapping batches
(docs/decisions/0011): a user's message of a later batch waits for that user's messages of
earlier batches; other users' messages do not."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from app.platform.runtime.handler import Delivery
from consumers.replier.reply_handler import ReplyHandler
from consumers.replier.reply_mode import ReplyModeRule
from schema.events import MessageReceived


def _delivery(entry_id: str, user_id: str, message_id: str) -> Delivery:
    event = MessageReceived(
        event_id=f"e-{message_id}",
        occurred_at=1,
        user_id=user_id,
        identity_id="i",
        message_id=message_id,
        channel="whatsapp",
        channel_user_key="+15550001111",
        source_message_id=f"wamid.{message_id}",
        content_type="text",
        text="hi",
        client_timestamp=1,
        received_at=1,
        tracking_score=1.0,
    )
    return Delivery(0, entry_id, event, 1)


class RecordingReplier(ReplyHandler):
    """Replies by recording start and end; holds the messages named in ``held``."""

    def __init__(self, held: set[str]) -> None:
        unused = cast(Any, None)  # reply_to is replaced: nothing reaches Redis, LLM or Graph
        super().__init__(
            redis=unused,
            outcomes=unused,
            store=unused,
            chat=unused,
            llm=unused,
            graph=None,
            rule=ReplyModeRule(1, 10_000),
            consumer_name="test",
        )
        self.held = held
        self.release = asyncio.Event()
        self.log: list[str] = []

    async def reply_to(self, delivery: Delivery) -> None:
        message_id = cast(MessageReceived, delivery.event).message_id
        self.log.append(f"start {message_id}")
        if message_id in self.held:
            await self.release.wait()
        self.log.append(f"end {message_id}")


async def test_a_later_batch_waits_for_the_same_users_earlier_reply_but_not_for_others() -> None:
    replier = RecordingReplier(held={"a1"})
    first = asyncio.create_task(replier.handle([_delivery("1-0", "ann", "a1")]))
    await asyncio.sleep(0)  # the first batch takes ann's turn and starts
    second = asyncio.create_task(
        replier.handle([_delivery("2-0", "ann", "a2"), _delivery("2-1", "bob", "b1")])
    )
    assert await second_done_for_bob(replier)
    assert replier.log == ["start a1", "start b1", "end b1"]  # a2 waits behind a1
    replier.release.set()
    assert await first == [None]
    assert await second == [None, None]
    assert replier.log == ["start a1", "start b1", "end b1", "end a1", "start a2", "end a2"]


async def second_done_for_bob(replier: RecordingReplier) -> bool:
    """Let the loop run until bob's reply ended (it must not need ann's to end)."""
    for _ in range(100):
        if "end b1" in replier.log:
            return True
        await asyncio.sleep(0)
    return False


async def test_a_users_turn_is_forgotten_once_the_last_batch_holding_it_is_done() -> None:
    replier = RecordingReplier(held=set())
    await replier.handle([_delivery("1-0", "ann", "a1")])
    await replier.handle([_delivery("2-0", "ann", "a2")])
    assert replier.log == ["start a1", "end a1", "start a2", "end a2"]
    assert replier._user_turns == {}
