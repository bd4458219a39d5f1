"""``mecove simulate``: planned traffic, reply matching, and a short run against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.devtools.simulate.traffic_plan import (
    OptionsError,
    TrafficOptions,
    plan_traffic,
    simulated_users,
    webhook_body,
)
from app.devtools.simulate.transcript import (
    BotReply,
    ReplyMatcher,
    UserMessage,
    bot_line,
    percentile,
)
from app.ingress.parse_webhook import parse_webhook
from app.platform.settings import Settings
from tests.processes import ROOT

BSUID = "US.13491208655302741918"


def _message(wamid: str, phone: str = "12025550100", sent_at: float = 10.0) -> UserMessage:
    return UserMessage(wamid, phone, "Asha", "hi", sent_at)


# -- the plan (pure) --------------------------------------------------------------------------

def test_the_plan_sends_bursts_from_users_in_turn_at_the_asked_rate() -> None:
    plan = plan_traffic(TrafficOptions(users=2, rate=3, burst=3, duplicates=0, seconds=5,
                                       username_users=0), random.Random(1))
    assert [d.at_s for d in plan] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [d.user.phone for d in plan] == ["12025550100", "12025550101"] * 2 + ["12025550100"]
    assert all(len(d.messages) == 3 for d in plan)
    wamids = [m.wamid for d in plan for m in d.messages]
    assert len(set(wamids)) == len(wamids)


@pytest.mark.parametrize(("fraction", "duplicated"), [(0.0, 0), (1.0, 4)])
def test_duplicate_deliveries_repeat_an_earlier_delivery_exactly(fraction: float,
                                                                  duplicated: int) -> None:
    plan = plan_traffic(TrafficOptions(rate=2, burst=2, duplicates=fraction, seconds=4),
                        random.Random(2))
    copies = [d for d in plan if d.duplicate]
    assert len(copies) == duplicated
    for copy in copies:
        (original,) = [d for d in plan if d.number == copy.number and not d.duplicate]
        assert copy.messages == original.messages and copy.at_s > original.at_s


@pytest.mark.parametrize("options", [
    TrafficOptions(users=0), TrafficOptions(rate=0), TrafficOptions(burst=0),
    TrafficOptions(duplicates=1.5), TrafficOptions(seconds=0), TrafficOptions(username_users=-0.1),
])
def test_options_out_of_range_are_refused(options: TrafficOptions) -> None:
    with pytest.raises(OptionsError):
        plan_traffic(options, random.Random(0))


def test_a_simulated_delivery_is_what_the_ingress_reads_as_texts_in_order() -> None:
    (delivery, *_) = plan_traffic(TrafficOptions(burst=3, seconds=1, duplicates=0,
                                                 username_users=0), random.Random(3))
    body = webhook_body(delivery, phone_number_id="1", display_phone_number="2",
                        business_account_id="3", timestamp=1_700_000_000)
    parsed = parse_webhook(body)
    assert [(t.sender.phone, t.wamid, t.text) for t in parsed.texts] == [
        ("+" + delivery.user.phone, m.wamid, m.text) for m in delivery.messages]
    assert parsed.ignored == 0 and not parsed.unknown_shape


def test_simulated_users_have_distinct_fictional_numbers() -> None:
    users = simulated_users(250, 0.0, random.Random(0))
    assert len({u.phone for u in users}) == 250
    assert all(re.fullmatch(r"1\d{3}55501\d{2}", u.phone or "") for u in users)


def test_a_fraction_of_users_have_a_username_and_a_bsuid_and_no_phone() -> None:
    users = simulated_users(10, 0.3, random.Random(4))
    named = [u for u in users if u.phone is None]
    assert len(named) == 3
    assert all(re.fullmatch(r"US\.\d{20}", u.bsuid or "") and u.username for u in named)
    assert all(u.bsuid is None and u.username is None for u in users if u.phone)
    assert [u.label for u in named] == [f"@{u.username}" for u in named]
    assert simulated_users(10, 0.3, random.Random(4)) == users  # the seed replays them


def test_a_username_user_s_delivery_names_them_by_bsuid_only_and_parses_so() -> None:
    plan = plan_traffic(TrafficOptions(users=1, burst=2, seconds=1, duplicates=0,
                                       username_users=1), random.Random(5))
    (delivery,) = plan
    user = delivery.user
    body = webhook_body(delivery, phone_number_id="1", display_phone_number="2",
                        business_account_id="3", timestamp=1_700_000_000)
    value = json.loads(body)["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": user.name, "username": user.username},
                                  "user_id": user.bsuid}]
    assert all("from" not in m and m["from_user_id"] == user.bsuid for m in value["messages"])
    parsed = parse_webhook(body)
    assert [(t.sender.phone, t.sender.bsuid, t.sender.username, t.wamid, t.text)
            for t in parsed.texts] == [(None, user.bsuid, user.username, m.wamid, m.text)
                                       for m in delivery.messages]


# -- the transcript (pure) --------------------------------------------------------------------

def test_a_contextual_reply_answers_the_message_it_quotes() -> None:
    matcher = ReplyMatcher()
    for wamid in ("w1", "w2", "w3"):
        matcher.sent(_message(wamid))
    quoted = matcher.answered(BotReply("+12025550100", "Noted.", "w1", 10.2))
    assert quoted is not None and quoted.wamid == "w1"
    assert matcher.waiting() == 2


def test_a_standalone_reply_answers_the_oldest_message_still_waiting() -> None:
    matcher = ReplyMatcher()
    for wamid in ("w1", "w2", "w3"):
        matcher.sent(_message(wamid))
    matcher.answered(BotReply("+12025550100", "Noted.", "w1", 10.1))
    answered = [matcher.answered(BotReply("+1 202 555 0100", "Noted.", None, 10.2))
                for _ in range(3)]
    assert [m.wamid if m else None for m in answered] == ["w2", "w3", None]


def test_a_reply_to_another_user_or_an_unknown_quote_answers_nothing() -> None:
    matcher = ReplyMatcher()
    matcher.sent(_message("w1"))
    assert matcher.answered(BotReply("+12025550199", "Noted.", None, 11.0)) is None
    assert matcher.answered(BotReply("+12025550100", "Noted.", "w-unknown", 11.0)) is None
    assert matcher.waiting() == 1


def test_a_reply_to_a_bsuid_answers_that_username_user_s_oldest_message() -> None:
    matcher = ReplyMatcher()
    matcher.sent(_message("w1"))
    matcher.sent(UserMessage("w2", BSUID, "Asha", "hi", 10.0, "asha"))
    reply = BotReply(None, "Noted.", None, 10.3, recipient=BSUID)
    answered = matcher.answered(reply)
    assert answered is not None and answered.wamid == "w2"
    assert " bot  @asha: Noted." in bot_line(1.0, reply, answered)
    assert " bot  " + BSUID + ": Noted." in bot_line(1.0, reply, None)
    assert matcher.waiting() == 1


@pytest.mark.parametrize(("context", "mark"), [
    ("wamid.A", "[contextual → quoting wamid.A]"), (None, "[standalone]"),
])
def test_bot_lines_say_how_the_reply_was_sent_and_how_long_it_took(
    context: str | None, mark: str,
) -> None:
    line = bot_line(1.5, BotReply("+12025550100", "Noted.", context, 10.25),
                    _message("wamid.A", sent_at=10.0))
    assert mark in line and line.endswith("250 ms after the message")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([], 0.5)) == \
        (50.0, 99.0, 0.0)


# -- a real run -------------------------------------------------------------------------------

def _processes_with_environment(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if state != "Z" and marker.encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
async def test_a_short_simulation_answers_phone_and_username_users_with_a_contextual_reply(
    settings: Settings, redis: Redis, tmp_path: Path,
) -> None:
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "GROQ_"))}
    env.update({
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "MECOVE_KEY_PREFIX": settings.key_prefix, "MECOVE_LOG_FORMAT": "json",
        "GROQ_API_KEY": "", "PYTHONUNBUFFERED": "1", "MECOVE_TEST_MARKER": marker,
    })
    output = tmp_path / "simulate.out"
    with output.open("wb") as out:
        run = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "app.cli", "simulate", "--seconds", "5", "--users", "2",
             "--rate", "3", "--burst", "3", "--duplicates", "0.5", "--seed", "11",
             "--username-users", "0.5", "--drain", "30"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=300,
        )
    text = output.read_text()
    print(text)
    assert run.returncode == 0, text
    user_lines = re.findall(r"^\[\s*[\d.]+s\] user (?:\+\d+|@\S+) .*$", text, re.M)
    bot_lines = re.findall(
        r"^\[\s*[\d.]+s\] bot  (?:\+\d+|@\S+): Noted\..*ms after the message$", text, re.M)
    assert len(user_lines) == 15  # five bursts of three
    assert len(bot_lines) == 15  # one reply each, none for the duplicate deliveries
    # one of the two users has a username and no phone: answered by BSUID, shown by @username
    assert {re.search(r"(?:user|bot ) ([+@])", line)[1] for line in user_lines + bot_lines
            } == {"+", "@"}
    assert "still without a reply: 0" in text
    assert sum("[contextual → quoting wamid." in line for line in bot_lines) >= 1
    assert any("[standalone]" in line for line in bot_lines)
    assert "0 deliveries not accepted" in text
    assert _processes_with_environment(marker) == []
