from __future__ import annotations

import pytest

from app.platform.eventlog.conversation_keys import ConversationKeys
from app.platform.eventlog.keys import Keys


@pytest.mark.parametrize("partition", [0, 7, 15, 99])
def test_a_message_s_three_keys_are_the_ones_named_one_by_one(partition: int) -> None:
    conversation = ConversationKeys(Keys("mecove-test", 16))

    keys = conversation.of_message(partition, "user-1", "message-1")

    assert keys == (conversation.tracking(partition, "user-1"),
                    conversation.recent(partition, "user-1"),
                    conversation.turn(partition, "message-1"))
    assert keys[2] == f"mecove-test:{{p{partition}}}:turn:message-1"
