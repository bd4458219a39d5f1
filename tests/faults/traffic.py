"""Webhook traffic for fault tests: a seeded plan (duplicates, out-of-order) and a concurrent
poster that signs every body and records each answer.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message

WAMID_IN_TEXT = re.compile(r"wamid\.[A-Za-z0-9_.-]+")
TRANSPORT_ERROR = 0  # the status recorded when no HTTP answer came back at all


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    wamid: str
    sender: str  # digits, as Meta sends ``from``
    text: str  # names its wamid, so the fake LLM's echo ties each reply to its message
    timestamp: int


@dataclass(frozen=True, slots=True)
class Webhook:
    messages: tuple[PlannedMessage, ...]
    raw: bytes
    duplicate: bool  # every message of it was already delivered earlier in the plan


@dataclass(frozen=True, slots=True)
class WebhookPlan:
    webhooks: list[Webhook]
    out_of_order: int  # first deliveries older than a message the same user already sent

    @property
    def wamids(self) -> set[str]:
        return {m.wamid for w in self.webhooks for m in w.messages}

    @property
    def duplicates(self) -> int:
        return sum(w.duplicate for w in self.webhooks)

    @property
    def users(self) -> int:
        return len({m.sender for w in self.webhooks for m in w.messages})

    def sender_of(self) -> dict[str, str]:
        return {m.wamid: m.sender for w in self.webhooks for m in w.messages}


def soak_plan(
    *,
    seed: int,
    tag: str,
    total: int = 10_000,
    users: int = 300,
    duplicate_share: float = 0.3,
    pair_share: float = 0.05,
    swap_share: float = 0.1,
) -> WebhookPlan:
    """``total`` webhooks: ~``duplicate_share`` of them redeliveries, some out of order.

    A few deliveries carry two messages of one user (Meta batches them); a redelivery repeats
    a whole delivery, sometimes before the first copy has been answered, sometimes long after.
    """
    rng = random.Random(seed)
    senders = [f"1555{rng.randrange(10**7):07d}" for _ in range(users)]
    clock = dict.fromkeys(senders, 1_700_000_000)
    unique: list[tuple[PlannedMessage, ...]] = []
    for number in range(round(total * (1 - duplicate_share))):
        sender = rng.choice(senders)
        size = 2 if rng.random() < pair_share else 1
        messages = []
        for part in range(size):
            clock[sender] += rng.randrange(1, 30)
            wamid = f"wamid.{tag}.{number:05d}.{part}"
            messages.append(PlannedMessage(wamid, sender, f"{tag} says {wamid}", clock[sender]))
        unique.append(tuple(messages))
    order = list(range(len(unique)))
    for here in range(len(order)):  # local swaps: deliveries overtaking each other
        if rng.random() < swap_share:
            other = min(len(order) - 1, here + rng.randrange(1, 20))
            order[here], order[other] = order[other], order[here]
    position = {delivery_number: at for at, delivery_number in enumerate(order)}
    sequence = [unique[i] for i in order]
    for _ in range(total - len(unique)):  # redeliveries, a little before or well after
        original = rng.randrange(len(unique))
        at = min(len(sequence), max(0, position[original] + rng.randrange(-20, 800)))
        sequence.insert(at, unique[original])
    seen: set[str] = set()
    newest: dict[str, int] = {}
    out_of_order = 0
    webhooks = []
    for delivered in sequence:
        duplicate = all(m.wamid in seen for m in delivered)
        if not duplicate:
            for message in delivered:
                if message.timestamp < newest.get(message.sender, 0):
                    out_of_order += 1
                newest[message.sender] = max(newest.get(message.sender, 0), message.timestamp)
        seen.update(m.wamid for m in delivered)
        body = delivery(*(text_message(m.sender, m.text, wamid=m.wamid, ts=m.timestamp)
                          for m in delivered))
        webhooks.append(Webhook(delivered, encode(body), duplicate))
    return WebhookPlan(webhooks, out_of_order)


@dataclass(slots=True)
class Progress:
    """How many webhooks have been answered so far; fault injectors wait on it."""

    answered: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    _waiters: list[tuple[int, asyncio.Event]] = field(default_factory=list)

    def record(self, status: int) -> None:
        self.answered += 1
        self.statuses[status] += 1
        for threshold, event in self._waiters:
            if self.answered >= threshold:
                event.set()

    async def reached(self, answered: int) -> None:
        """Return once at least ``answered`` webhooks have been answered."""
        if self.answered >= answered:
            return
        event = asyncio.Event()
        self._waiters.append((answered, event))
        await event.wait()


async def post_webhooks(
    url: str,
    bodies: list[bytes],
    secret: str,
    *,
    concurrency: int = 32,
    progress: Progress | None = None,
    timeout_s: float = 30.0,
    pace: Callable[[int], float] | None = None,
) -> list[int]:
    """POST every signed body, ``concurrency`` at a time; returns each one's HTTP status.

    ``pace(i)``, when given, is the delay in seconds before body ``i`` is sent by its worker,
    for traffic spread over a chosen duration.
    """
    progress = progress or Progress()
    statuses = [TRANSPORT_ERROR] * len(bodies)
    next_index = iter(range(len(bodies)))

    tls = ssl.create_default_context()  # built once: each client would load the CA file again

    async def worker() -> None:
        # One client, one keep-alive connection per worker: httpx's shared pool spends
        # quadratic time matching many concurrent requests to connections.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=timeout_s, limits=limits, verify=tls) as client:
            for index in next_index:
                if pace is not None:
                    await asyncio.sleep(pace(index))
                raw = bodies[index]
                try:
                    response = await client.post(url, content=raw,
                                                 headers=signed_headers(raw, secret))
                    statuses[index] = response.status_code
                except httpx.TransportError:
                    statuses[index] = TRANSPORT_ERROR
                progress.record(statuses[index])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def server_errors(statuses: list[int], *, allowed: frozenset[int] = frozenset()) -> int:
    """How many answers were a 5xx (other than ``allowed`` ones) or no answer at all."""
    return sum(1 for s in statuses if (s >= 500 or s == TRANSPORT_ERROR) and s not in allowed)
