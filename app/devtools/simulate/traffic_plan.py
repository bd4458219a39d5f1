"""Who sends what, when: a simulated run planned up front, and Meta's webhook bodies for it.

Pure: the plan comes from the options and a seeded ``random.Random``, so a run can be
replayed with ``--seed``. Each delivery is one user's burst of messages in a single webhook
(as Meta posts several messages of one sender together): in a burst of three the first has
two after it, so its reply is contextual. A fraction of deliveries is posted a second time,
byte for byte, as Meta does when it retries; the service must append and answer nothing new.
A fraction of the users have adopted a WhatsApp username: Meta names them only by a
business-scoped user id (BSUID) and their bodies carry no phone number, so the service must
answer them with ``recipient`` = the BSUID.
"""

from __future__ import annotations

import base64
import math
import random
from dataclasses import dataclass

from app.devtools import webhook_bodies

# Fictional numbers (NANP 555-01xx) and first names for the simulated users.
_NAMES = ("Asha", "Ben", "Chen", "Dara", "Elif", "Farid", "Gita", "Hugo", "Ines", "Jon",
          "Kemi", "Luca", "Mei", "Nia", "Omar", "Priya")
_TEXTS = (
    "hi", "hello there", "are you open today?", "I ordered on Monday",
    "order #4411 still hasn't arrived", "can you check the status?", "thanks!",
    "do you deliver on Sundays?", "how much is the large one?", "ok", "never mind, found it",
    "my card was charged twice", "can I change the delivery address?",
    "it's 21 Baker Street", "how long does shipping take?", "great 👍",
    "is there a discount for students?", "one more thing", "sorry, wrong chat", "perfect",
)


@dataclass(frozen=True, slots=True)
class TrafficOptions:
    users: int = 5
    rate: float = 2.0  # messages per second, all users together
    burst: int = 3  # messages per delivery: one user's burst
    duplicates: float = 0.1  # fraction of deliveries that Meta posts twice
    seconds: float = 30.0
    username_users: float = 0.3  # fraction of users named by BSUID and username, no phone


@dataclass(frozen=True, slots=True)
class SimulatedUser:
    """A phone user (``phone``), or a username user (``bsuid`` and ``username``, no phone)."""

    phone: str | None  # Meta's "from": digits, no "+"
    name: str
    bsuid: str | None = None  # Meta's "from_user_id", e.g. "US.13491208655302741918"
    username: str | None = None

    @property
    def address(self) -> str:
        """What Meta names the user by in a body and the service replies to: phone, or BSUID."""
        address = self.phone or self.bsuid
        assert address is not None  # simulated_users gives every user one or the other
        return address

    @property
    def label(self) -> str:
        """How the conversation shows the user: ``+phone`` or ``@username``."""
        return f"+{self.phone}" if self.phone else f"@{self.username}"


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    wamid: str
    text: str


@dataclass(frozen=True, slots=True)
class PlannedDelivery:
    """One webhook POST ``at_s`` seconds into the run; ``duplicate`` repeats ``number``."""

    at_s: float
    number: int
    user: SimulatedUser
    messages: tuple[PlannedMessage, ...]
    duplicate: bool = False


class OptionsError(ValueError):
    """An option is out of range; the message names it."""


def check_options(options: TrafficOptions) -> None:
    if options.users < 1:
        raise OptionsError("--users must be at least 1")
    if options.rate <= 0:
        raise OptionsError("--rate must be a positive number of messages per second")
    if options.burst < 1:
        raise OptionsError("--burst must be at least 1")
    if not 0 <= options.duplicates <= 1:
        raise OptionsError("--duplicates must be a fraction between 0 and 1")
    if options.seconds <= 0:
        raise OptionsError("--seconds must be positive")
    if not 0 <= options.username_users <= 1:
        raise OptionsError("--username-users must be a fraction between 0 and 1")


def simulated_users(count: int, username_users: float, rng: random.Random
                    ) -> list[SimulatedUser]:
    """``count`` users; ``count * username_users`` of them (half rounded up), picked by
    ``rng``, are username users with a BSUID from ``rng``, the others have fictional numbers
    (+1 202 555 01xx, the next area code per 100)."""
    with_username = set(rng.sample(range(count), math.floor(count * username_users + 0.5)))
    users = []
    for i in range(count):
        suffix = f" {i // len(_NAMES) + 1}" if i >= len(_NAMES) else ""
        name = _NAMES[i % len(_NAMES)] + suffix
        if i in with_username:
            users.append(SimulatedUser(phone=None, name=name, bsuid=new_bsuid(rng),
                                       username=name.lower().replace(" ", ".")))
        else:
            users.append(SimulatedUser(phone=f"1{202 + i // 100}55501{i % 100:02d}", name=name))
    return users


def new_bsuid(rng: random.Random) -> str:
    """A Meta-looking business-scoped user id: country code, a dot, 20 digits."""
    return f"US.{rng.randrange(10**19, 10**20)}"


def new_wamid(rng: random.Random) -> str:
    """A Meta-looking message id: ``wamid.`` and base64 (the real ones encode the chat)."""
    return "wamid.HBgL" + base64.b64encode(rng.randbytes(30)).decode()


def plan_traffic(options: TrafficOptions, rng: random.Random) -> list[PlannedDelivery]:
    """Deliveries every ``burst / rate`` seconds, users in turn, duplicates mixed in."""
    check_options(options)
    users = simulated_users(options.users, options.username_users, rng)
    interval = options.burst / options.rate
    count = max(1, math.ceil(options.seconds / interval - 1e-9))  # every k·interval < seconds
    plan: list[PlannedDelivery] = []
    for number in range(count):
        at_s = number * interval
        texts = (rng.sample(_TEXTS, options.burst) if options.burst <= len(_TEXTS)
                 else rng.choices(_TEXTS, k=options.burst))
        messages = tuple(PlannedMessage(new_wamid(rng), text) for text in texts)
        original = PlannedDelivery(at_s, number, users[number % len(users)], messages)
        plan.append(original)
        if rng.random() < options.duplicates:
            retry_at = at_s + rng.uniform(0.2, 2.0)
            plan.append(PlannedDelivery(retry_at, number, original.user, messages,
                                        duplicate=True))
    plan.sort(key=lambda d: d.at_s)
    return plan


def webhook_body(delivery: PlannedDelivery, *, phone_number_id: str,
                 display_phone_number: str, business_account_id: str,
                 timestamp: int) -> bytes:
    """The JSON Meta posts for ``delivery`` (``timestamp``: the sender's clock, seconds)."""
    user = delivery.user
    message = (webhook_bodies.text_message if user.phone
               else webhook_bodies.username_text_message)
    messages = [message(user.address, m.text, m.wamid, timestamp) for m in delivery.messages]
    usernames = {user.address: user.username} if user.username else None
    return webhook_bodies.encode(webhook_bodies.delivery(
        *messages, names={user.address: user.name}, usernames=usernames,
        phone_number_id=phone_number_id,
        display_phone_number=display_phone_number, business_account_id=business_account_id))
