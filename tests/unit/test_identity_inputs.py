"""The script inputs of a sender are kept per sender, bounded, and equal to those built anew."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from app.platform import identities
from app.platform.identities import IdentityLinks, Sender, first_user_id


def _inputs(links: IdentityLinks, sender: Sender) -> tuple[list[str], list[str | int]]:
    keys: list[str] = ["stream"]
    args: list[str | int] = ["0"]
    links.add_inputs(sender, keys, args)
    return keys, args


def test_a_senders_inputs_are_the_same_when_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identities, "KNOWN_SENDERS_KEPT", 2)
    links = IdentityLinks(Redis(), "p")
    both = Sender(phone="+919130099484", bsuid="US.1")
    phone_only = Sender(phone="+14155550100", bsuid=None)
    expected = (["stream", "p:{ids}:bsuid:US.1", "p:{ids}:phone:+919130099484"],
                ["0", "1", "1", first_user_id(both)])
    assert _inputs(links, both) == expected
    assert _inputs(links, both) == expected  # kept: the same lists again
    assert _inputs(links, phone_only) == (
        ["stream", "p:{ids}:none", "p:{ids}:phone:+14155550100"],
        ["0", "0", "1", first_user_id(phone_only)])
    bsuid_only = Sender(phone=None, bsuid="US.2")
    assert _inputs(links, bsuid_only)[0][2] == "p:{ids}:none"
    assert len(links._inputs) == 2  # bounded: the oldest sender's inputs were dropped
    assert (both.bsuid, both.phone) not in links._inputs
    assert _inputs(links, both) == expected  # built again, the same
