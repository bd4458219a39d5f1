"""What a projector leaves out of a batch because its earlier batches wrote it (no database)."""

from __future__ import annotations

import msgspec

from projections.known_rows import LIMIT, KnownRows
from projections.row_changes import RowChanges
from schema.events import MessageReceived, UserForgotten

AT = 1_700_000_000_123


def _received(n: int, *, user: str = "u-1", bsuid: str | None = None,
              username: str | None = None) -> MessageReceived:
    return MessageReceived(
        event_id=f"e-m{n}", occurred_at=AT, user_id=user, identity_id=f"i-{user}",
        message_id=f"m-{n}", channel="whatsapp", channel_user_key=f"+9191300{user[-1]}",
        source_message_id=f"wamid.{n}", content_type="text", text=f"text {n}",
        client_timestamp=None, received_at=AT, tracking_score=float(AT), raw_payload=None,
        bsuid=bsuid, username=username,
    )


def _batch(*events: MessageReceived | UserForgotten) -> RowChanges:
    changes = RowChanges()
    for n, event in enumerate(events):
        changes.add(0, f"{AT}-{n}", event)
    return changes


def test_a_batch_keeps_every_row_until_one_committed() -> None:
    known = KnownRows()
    known.trust_at((0, 0))
    changes = _batch(_received(1))
    known.leave_out_unchanged(changes)
    assert list(changes.users) == ["u-1"] and len(changes.identities) == 1


def test_rows_committed_before_are_left_out_and_new_users_are_kept() -> None:
    known = KnownRows()
    known.trust_at((0, 0))
    known.committed(_batch(_received(1)), (AT, 0))
    known.trust_at((AT, 0))
    changes = _batch(_received(2), _received(3, user="u-2"))
    known.leave_out_unchanged(changes)
    assert list(changes.users) == ["u-2"]
    assert [row[0] for row in changes.identities.values()] == ["u-2"]
    assert [m for m in changes.messages] == ["m-2", "m-3"]  # messages are never left out


def test_a_new_username_or_parent_bsuid_is_written_an_unchanged_one_left_out() -> None:
    known = KnownRows()
    known.trust_at((0, 0))
    known.committed(_batch(_received(1, bsuid="US.1", username="ada")), (AT, 0))
    for username, kept in (("ada", False), (None, False), ("ada2", True)):
        known.trust_at((AT, 0))
        changes = _batch(_received(2, bsuid="US.1", username=username))
        known.leave_out_unchanged(changes)
        bsuid_rows = [r for r in changes.identities.values() if r[4] == "bsuid"]
        assert bool(bsuid_rows) is kept, username


def test_a_checkpoint_moved_by_someone_else_makes_it_start_over() -> None:
    known = KnownRows()
    known.trust_at((0, 0))
    known.committed(_batch(_received(1)), (AT, 0))
    known.trust_at((AT, 5))  # e.g. replay's swap applied the tail, or another lease holder
    changes = _batch(_received(2))
    known.leave_out_unchanged(changes)
    assert list(changes.users) == ["u-1"] and len(changes.identities) == 1


def test_an_erasure_makes_it_forget_identities_but_not_users() -> None:
    known = KnownRows()
    known.trust_at((0, 0))
    forgotten = UserForgotten(event_id="e-f", occurred_at=AT, user_id="u-1", key_ids=[],
                              forgotten_at=AT)
    known.committed(_batch(_received(1, bsuid="US.1", username="ada"), forgotten), (AT, 1))
    known.trust_at((AT, 1))
    changes = _batch(_received(2, bsuid="US.1", username="ada"))
    known.leave_out_unchanged(changes)
    assert not changes.users
    assert len(changes.identities) == 2  # the username was erased: write it again


def test_past_its_limit_it_starts_over() -> None:
    known = KnownRows()
    known.trust_at((0, 0))
    known.users.update(f"x-{n}" for n in range(LIMIT))
    known.committed(_batch(_received(1)), (AT, 0))
    assert known.users == {"u-1"}


def test_a_larger_limit_holds_more_before_starting_over() -> None:
    known = KnownRows(limit=LIMIT * 2)
    known.users.update(f"x-{n}" for n in range(LIMIT))
    known.committed(_batch(_received(1)), (AT, 0))
    assert len(known.users) == LIMIT + 1


def test_leaving_out_changes_nothing_else_in_the_batch() -> None:
    known = KnownRows()
    known.trust_at((0, 0))
    known.committed(_batch(_received(1)), (AT, 0))
    known.trust_at((AT, 0))
    changes = _batch(_received(2))
    archive = msgspec.json.encode(changes.archive)
    known.leave_out_unchanged(changes)
    assert msgspec.json.encode(changes.archive) == archive
