"""Who wrote: one user per person, whether Meta names them by phone, by BSUID, or both.

Links live in Redis under one fixed hash tag (``{prefix}:{ids}:bsuid:<bsuid>`` and
``{prefix}:{ids}:phone:<e164>``, value = user id), written once and never changed. One Lua
script reads and creates the links of a whole delivery atomically, before its events are
appended; the decided user id and identities travel in the MessageReceived event, so the
projections and replay copy the decision and never take it again. A crash between resolving
and appending is harmless: Meta redelivers and the links resolve the same way. With
``MECOVE_REDIS_MIN_REPLICAS`` k > 0 the links are confirmed on k replicas (``WAIT``) before
the append, so a failover that keeps an event keeps the links it was decided by.

The rule (docs/decisions/0007-user-identities.md): the BSUID's user if the BSUID is linked,
else the phone's user if the phone is linked, else a new user whose id derives from the phone
when there is one (as it always did), else from the BSUID. Unlinked identities of the message
are then linked to that user. A phone already linked to another user is left alone (the first
link wins): the message goes to the BSUID's user without that phone, logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from app.platform.eventlog.entries import as_text
from app.platform.eventlog.lua import script
from app.platform.metrics import IDENTITY_CONFLICTS, IDENTITY_LINKS
from app.platform.redis_client import DurableWrites, RedisClient
from app.platform.same_turn_batches import SameTurnBatches
from schema.ids import identity_id_for, user_id_for

log = logging.getLogger("mecove.identities")

CHANNEL = "whatsapp"

# One sender's resolution, for scripts that resolve senders (needs lua.ARGUMENT_READERS
# before it). Reads KEYS: its BSUID link, its phone link (``IdentityKeys.unused`` for a missing
# one); ARGV: has a BSUID, has a phone ('1' or '0'), the user id for a person seen for the
# first time. Returns user id, phone state ('linked', 'none', or 'conflict': the phone belongs
# to another user) and how many links it created. With ``confirm`` the links it reads are
# rewritten (same value) so that a WAIT after the call covers them even when an earlier,
# unconfirmed call created them.
RESOLVE_SENDER_LUA = """
local function resolve_sender(confirm)
  local bsuid_key = next_key()
  local phone_key = next_key()
  local has_bsuid = next_arg() == '1'
  local has_phone = next_arg() == '1'
  local new_user = next_arg()
  local created = 0
  local user = false
  if has_bsuid then user = redis.call('GET', bsuid_key) end
  local phone_user = false
  if has_phone then phone_user = redis.call('GET', phone_key) end
  if not user then user = phone_user or new_user end
  if has_bsuid then
    if redis.call('SET', bsuid_key, user, 'NX') then
      created = created + 1
    elseif confirm then
      redis.call('SET', bsuid_key, user)  -- the value it holds: a write for WAIT to cover
    end
  end
  local phone_state = 'none'
  if has_phone then
    if not phone_user then
      redis.call('SET', phone_key, user)
      created = created + 1
      phone_state = 'linked'
    else
      if confirm then redis.call('SET', phone_key, phone_user) end
      if phone_user == user then phone_state = 'linked' else phone_state = 'conflict' end
    end
  end
  return user, phone_state, created
end
"""

# ARGV[1] is '1' when the links read must be rewritten for a WAIT (see RESOLVE_SENDER_LUA),
# then per sender the KEYS and ARGV of RESOLVE_SENDER_LUA.
# Returns per sender {user id, phone state, links created}.
RESOLVE_IDENTITIES_LUA = script(RESOLVE_SENDER_LUA, """
local confirm = next_arg() == '1'
local results = {}
while has_more_keys() do
  local user, phone_state, created = resolve_sender(confirm)
  results[#results + 1] = {user, phone_state, created}
end
return results
""")

KNOWN_SENDERS_KEPT = 20_000  # resolutions remembered to guess the next (about 4 MB)


# msgspec Structs, not frozen dataclasses: built per message, and a frozen dataclass sets each
# field through ``object.__setattr__`` (about ten times the cost). No cycles: ``gc=False``.
class Sender(msgspec.Struct, frozen=True, gc=False):
    """How Meta named the writer of a message; at least one of phone and bsuid is set."""

    phone: str | None  # E.164 with +
    bsuid: str | None
    parent_bsuid: str | None = None
    username: str | None = None


class Resolution(msgspec.Struct, frozen=True, gc=False):
    """The user a sender is, and which of its identities belong to that user."""

    user_id: str
    phone: str | None  # None when absent, or when it is linked to another user
    bsuid: str | None


def first_user_id(sender: Sender) -> str:
    """The id of a person seen for the first time: from the phone when given, so that users
    known by phone before BSUIDs existed keep their id; else from the BSUID."""
    key = sender.phone or sender.bsuid
    assert key is not None
    return user_id_for(identity_id_for(CHANNEL, key))


def first_sighting(sender: Sender) -> Resolution:
    """The resolution of a sender none of whose identities is linked yet."""
    return Resolution(user_id=first_user_id(sender), phone=sender.phone, bsuid=sender.bsuid)


@dataclass(frozen=True, slots=True)
class IdentityKeys:
    prefix: str
    # Named by every script call for each sender without a BSUID or a phone: built once.
    _unused: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_unused", f"{self.prefix}:{{ids}}:none")

    def bsuid(self, bsuid: str) -> str:
        return f"{self.prefix}:{{ids}}:bsuid:{bsuid}"

    def phone(self, phone: str) -> str:
        return f"{self.prefix}:{{ids}}:phone:{phone}"

    def unused(self) -> str:
        """Stands in for an identity a sender lacks: same slot, never read or written."""
        return self._unused


class IdentityLinks:
    """Resolves senders to users, creating links atomically. Deliveries resolved in the same
    event-loop turn share one script call (all links live in one slot); the script handles
    their senders one after the other, exactly as separate calls in that order would.

    It also remembers the latest resolutions (bounded) so that a caller can guess a sender's
    user before asking Redis (``guess``); a guess is only ever a claim that a script checks.

    With ``writes`` requiring replicas (``MECOVE_REDIS_MIN_REPLICAS``), a resolution returns
    only once the links it created or read have reached them, else ``ReplicaShortfall`` (the
    ingress answers 503 before appending anything): a failover can then never keep an event
    whose user id came from a link it lost."""

    def __init__(self, redis: RedisClient, prefix: str,
                 writes: DurableWrites | None = None) -> None:
        self.keys = IdentityKeys(prefix)
        self._writes = writes if writes is not None else DurableWrites(redis)
        self._resolve = redis.register_script(RESOLVE_IDENTITIES_LUA)
        self._batches: SameTurnBatches[Sender, Resolution] = SameTurnBatches(self._resolve_now)
        self._known: dict[tuple[str | None, str | None], Resolution] = {}
        self._inputs: dict[tuple[str | None, str | None],
                           tuple[tuple[str, str], tuple[str, str, str]]] = {}

    async def resolve(self, senders: Sequence[Sender]) -> list[Resolution]:
        """One Resolution per sender, in order; raises RedisError when Redis is unreachable."""
        return await self._batches.submit(senders)

    def guess(self, sender: Sender) -> Resolution | None:
        """The sender's last resolution seen by this process (None: not seen yet)."""
        return self._known.get((sender.bsuid, sender.phone))

    def add_inputs(self, sender: Sender, keys: list[str], args: list[str | int]) -> None:
        """Add the keys and arguments ``RESOLVE_SENDER_LUA`` reads for ``sender``.

        Kept per sender (bounded as the resolutions are): the first user id is a UUIDv5 (a
        SHA-1) and the keys two formatted strings, the same for every message of a sender."""
        known = (sender.bsuid, sender.phone)
        inputs = self._inputs.get(known)
        if inputs is None:
            inputs = (
                (self.keys.bsuid(sender.bsuid) if sender.bsuid else self.keys.unused(),
                 self.keys.phone(sender.phone) if sender.phone else self.keys.unused()),
                ("1" if sender.bsuid else "0", "1" if sender.phone else "0",
                 first_user_id(sender)),
            )
            if len(self._inputs) >= KNOWN_SENDERS_KEPT:
                del self._inputs[next(iter(self._inputs))]  # the oldest kept
            self._inputs[known] = inputs
        keys += inputs[0]
        args += inputs[1]

    def resolution_from(self, sender: Sender, reply: Sequence[bytes | str | int]) -> Resolution:
        """A ``RESOLVE_SENDER_LUA`` answer {user id, phone state, links created} -> the
        sender's Resolution; counts the links and conflicts, and remembers the answer."""
        raw_user, raw_state, created = reply
        user_id = as_text(raw_user)  # type: ignore[arg-type]
        state = as_text(raw_state)  # type: ignore[arg-type]
        if created and int(created):
            IDENTITY_LINKS.inc(int(created))
        if state == "conflict":
            IDENTITY_CONFLICTS.inc()
            log.warning("phone already linked to another user; kept the first link and "
                        "answered through the BSUID", extra={"fields": {
                            "user_id": user_id,
                            "identity_id": identity_id_for(CHANNEL, sender.phone or "")}})
        known = (sender.bsuid, sender.phone)
        remembered = self._known.get(known)
        linked = state == "linked"
        if remembered is not None and remembered.user_id == user_id \
                and (remembered.phone is not None) == linked:
            return remembered  # the same resolution again (the common case): nothing to change
        resolution = Resolution(
            user_id=user_id,
            phone=sender.phone if linked else None,
            bsuid=sender.bsuid,
        )
        if remembered is None and len(self._known) >= KNOWN_SENDERS_KEPT:
            del self._known[next(iter(self._known))]  # the oldest remembered
        self._known[known] = resolution
        return resolution

    async def _resolve_now(self, senders: list[Sender]) -> list[Resolution]:
        keys: list[str] = []
        args: list[str | int] = ["1" if self._writes.min_replicas else "0"]
        for sender in senders:
            self.add_inputs(sender, keys, args)
        replies = await self._writes.write(keys[0], lambda client: self._resolve(
            keys=keys, args=args, client=client))
        return [self.resolution_from(sender, reply)
                for sender, reply in zip(senders, replies, strict=True)]
