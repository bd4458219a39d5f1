"""Users and identities a projector knows are in the live tables, so a batch skips their rows.

Most messages come from people already projected; their ``users`` row (``ON CONFLICT DO
NOTHING``) and usually their ``identities`` row (updated only by a new parent BSUID or
username) would change nothing, yet cost a staging COPY and an upsert probe each. A projector
remembers, per partition, what its own committed batches wrote, and leaves out the rows that
cannot change anything.

The memory is only trusted while the partition's checkpoint is the one this projector last
committed: when anything else moved it (another lease holder, replay's swap applying the tail),
it starts over. An erasure (``UserForgotten``) nulls usernames, so a batch holding one makes
it forget every identity. It holds at most ``LIMIT`` ids per kind (replay, a batch job, holds
more), then starts over.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.platform.eventlog.entries import Position
from projections.row_changes import RowChanges

LIMIT = 20_000  # ids per kind and partition: about 6 MB (measured with tracemalloc)

# identity id -> (parent BSUID, username) as last written; None: not known
_Identity = tuple[str | None, str | None]


@dataclass(slots=True)
class KnownRows:
    """What one partition's committed batches wrote, as of ``checkpoint``."""

    checkpoint: Position | None = None
    limit: int = LIMIT  # ids per kind held before starting over
    users: set[str] = field(default_factory=set)
    identities: dict[str, _Identity] = field(default_factory=dict)

    def trust_at(self, checkpoint: Position) -> None:
        """Start over unless ``checkpoint`` is the one this memory was left at."""
        if checkpoint != self.checkpoint:
            self.forget_all()

    def forget_all(self) -> None:
        self.checkpoint = None
        self.users.clear()
        self.identities.clear()

    def leave_out_unchanged(self, changes: RowChanges) -> None:
        """Take out of ``changes`` the users and identities rows that would change nothing
        (those are known already, so ``committed`` needs them no more)."""
        known = self.users
        if known:
            changes.users = {u: at for u, at in changes.users.items() if u not in known}
        identities = self.identities
        if identities:
            get = identities.get  # inlined ``_same_identity``: once per identity of a batch
            changes.identities = {
                i: row for i, row in changes.identities.items()
                if (was := get(i)) is None or (row[5] is not None and row[5] != was[0])
                or (row[6] is not None and row[6] != was[1])}

    def committed(self, changes: RowChanges, checkpoint: Position) -> None:
        """Remember the rows of a batch committed at ``checkpoint``."""
        if len(self.users) + len(changes.users) > self.limit or \
                len(self.identities) + len(changes.identities) > self.limit:
            self.forget_all()
        self.users.update(changes.users)
        for identity_id, row in changes.identities.items():
            known = self.identities.get(identity_id)
            self.identities[identity_id] = (
                row[5] if row[5] is not None else (known[0] if known else None),
                row[6] if row[6] is not None else (known[1] if known else None),
            )
        if changes.forgotten:
            self.identities.clear()
        self.checkpoint = checkpoint
