"""Fuzzing the ingress with hypothesis: mutated real Meta payloads, random JSON, random bytes,
huge strings, deep nesting and wrong types, each signed and posted to the in-process app.

Never a 5xx, never an ERROR or exception log record, and whatever the ingress accepted into
the log, the projector can apply: no accepted input breaks a later stage.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, signed_headers, text_message
from app.ingress.app_factory import create_app
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from projections.projector import Projector
from tests.faults.fault_table import FaultRow, FaultTable
from tests.faults.ledger import dead_letters, describe_dead_letters, event_types, stream_entries
from tests.meta_fixtures import fixture_variants
from tests.service import consumers

JSON = Any
ACCEPTED_STATUSES = {200, 400, 413}
MiB = 1024 * 1024

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=5),
    max_leaves=25,
)
tricky_text = st.sampled_from([
    "", " ", "\u0000", "a\u0000b", "\ud7ff\ue000", "💥" * 50, "\u202e", "{p0}", "}{", "::",
    "%s%n", "'; DROP TABLE messages; --", "\\", '"', "\n" * 10, "+", "00", "0" * 20,
    "9" * 16, "x" * 5000,
])
FIXTURES = [body for _file, _variant, body in fixture_variants()]


def _paths(value: JSON, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (tuple of keys / indexes) inside a JSON value, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += _paths(child, (*prefix, index))
    return out


def _set(root: JSON, path: tuple[Any, ...], new: JSON) -> JSON:
    if not path:
        return new
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return root


def _delete(root: JSON, path: tuple[Any, ...]) -> JSON:
    if not path:
        return {}
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return root


def _get(root: JSON, path: tuple[Any, ...]) -> JSON:
    for step in path:
        root = root[step]
    return root


MUTATIONS = ("replace", "delete", "retype", "wrap", "duplicate", "tricky", "add_key")


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> JSON:
    """A real Meta payload with 1-4 random mutations at random places in its tree."""
    body = copy.deepcopy(draw(st.sampled_from(FIXTURES)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(body)))
        node = _get(body, path)
        kind = draw(st.sampled_from(MUTATIONS))
        if kind == "replace":
            body = _set(body, path, draw(json_values))
        elif kind == "delete":
            body = _delete(body, path)
        elif kind == "retype":  # the same value as another JSON type
            retyped: dict[type, Callable[[Any], JSON]] = {
                str: lambda v: int(v) if v.isdigit() else [v], int: str, float: str,
                bool: int, type(None): lambda _: 0,
                list: lambda v: {str(i): x for i, x in enumerate(v)},
                dict: lambda v: list(v.values())}
            body = _set(body, path, retyped[type(node)](node))
        elif kind == "wrap":
            body = _set(body, path, draw(st.sampled_from([[node], {"value": node}])))
        elif kind == "duplicate" and isinstance(node, list) and node:
            node.extend(copy.deepcopy(node) * draw(st.integers(1, 3)))
        elif kind == "tricky":
            body = _set(body, path, draw(tricky_text))
        elif kind == "add_key" and isinstance(node, dict):
            node[draw(st.text(max_size=10))] = draw(json_values)
    return body


@st.composite
def hostile_text_messages(draw: st.DrawFn) -> JSON:
    """Well-formed text deliveries whose sender, wamid and text are hostile."""
    digits = draw(st.text(alphabet="0123456789", min_size=6, max_size=15).filter(
        lambda d: d[0] != "0"))
    count = draw(st.integers(1, 5))
    messages = [text_message(
        draw(st.sampled_from([digits, "+" + digits, "00" + digits, digits[:3] + " " + digits[3:]])),
        draw(tricky_text | st.text(max_size=200)),
        wamid="wamid." + draw(tricky_text | st.text(min_size=1, max_size=60)),
        ts=draw(st.integers(-(2**40), 2**40)),
    ) for _ in range(count)]
    return delivery(*messages)


def _huge_and_deep() -> list[bytes]:
    """Inputs at the limits: near and over 1 MiB, very deep nesting, many messages at once."""
    near_limit = json.dumps(delivery(text_message("15550001111", "x" * (MiB - 2_000),
                                                  wamid="wamid.huge.text"))).encode()
    huge_wamid = json.dumps(delivery(text_message("15550001112", "hi",
                                                  wamid="wamid." + "w" * 200_000))).encode()
    huge_phone = json.dumps(delivery(text_message("1" * 100_000, "hi",
                                                  wamid="wamid.huge.phone"))).encode()
    many = json.dumps(delivery(*(text_message("15550001113", f"m{i}", wamid=f"wamid.many.{i}")
                                 for i in range(3_000)))).encode()
    deep_list = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    deep_in_text = json.dumps(delivery(text_message("15550001114", "deep"))).encode().replace(
        b'"body": "deep"', b'"body": ' + b"[" * 20_000 + b"]" * 20_000)
    return [near_limit, huge_wamid, huge_phone, many, deep_list, deep_object, deep_in_text,
            b"x" * (MiB + 1), b"{" * (MiB + 10), b"", b"\xff\xfe\x00", b"null", b"1e999999",
            b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": '
            b'{"messages": [' + b"{}," * 10_000 + b"{}]}}]}]}"]


def _run_hypothesis(strategy: st.SearchStrategy[Any], examples: int,
                    check: Callable[[Any], None]) -> None:
    @hypothesis_settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
    @given(value=strategy)
    def run(value: Any) -> None:
        check(value)

    run()


def _fuzz(settings: Settings) -> Counter[int]:
    """Every fuzz family against one running app (sync client: its own event loop thread)."""
    statuses: Counter[int] = Counter()
    secret = settings.whatsapp_app_secret or ""
    with TestClient(app=create_app(settings)) as client:

        def post_raw(raw: bytes) -> None:
            response = client.post("/webhooks/whatsapp", content=raw,
                                   headers=signed_headers(raw, secret))
            statuses[response.status_code] += 1
            assert response.status_code in ACCEPTED_STATUSES, (response.status_code, raw[:300])
            if len(raw) > MiB:
                assert response.status_code == 413
            if response.status_code == 200:
                assert response.json() == {"ok": True}

        def post_json(value: JSON) -> None:
            post_raw(json.dumps(value).encode())

        _run_hypothesis(mutated_fixtures(), 400, post_json)
        _run_hypothesis(hostile_text_messages(), 150, post_json)
        _run_hypothesis(json_values, 150, post_json)
        _run_hypothesis(st.binary(max_size=4_000), 150, post_raw)
        for raw in _huge_and_deep():
            post_raw(raw)
    return statuses


async def _project_everything(settings: Settings, redis: Redis, timeout: float = 10) -> str:
    """Run the projector until it has applied the whole stream; "" or why it did not."""
    keys = Keys(settings.key_prefix, settings.partitions)
    tail = cast(list[tuple[bytes, dict[bytes, bytes]]],
                await redis.xrevrange(keys.stream(0), count=1))[0][0]
    deadline = time.monotonic() + timeout
    async with consumers(settings, [Projector.from_settings(settings)]):
        while True:
            groups = {g["name"]: g for g in await redis.xinfo_groups(keys.stream(0))}
            state = groups.get(b"projector")
            if state and state["last-delivered-id"] == tail and state["pending"] == 0:
                return ""
            if time.monotonic() > deadline:
                return f"projector stuck after {timeout:.0f}s: {state}"
            await asyncio.sleep(0.1)


def _retry_errors(records: list[logging.LogRecord]) -> list[str]:
    """The distinct errors of batches the projector kept retrying in place."""
    found = {str(getattr(r, "fields", {}).get("error")) for r in records
             if r.getMessage() == "batch failed, retrying in place"}
    return sorted(found)


async def test_no_fuzzed_webhook_gets_a_5xx_logs_an_error_or_breaks_the_projection(
    settings: Settings, redis: Redis, caplog: pytest.LogCaptureFixture,
    fault_table: FaultTable,
) -> None:
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    statuses = await asyncio.to_thread(_fuzz, settings)
    fuzz_seconds = time.monotonic() - started
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    keys = Keys(settings.key_prefix, settings.partitions)
    appended = (await event_types(redis, keys))["MessageReceived"]
    message_ids = set()
    for _, fields in await stream_entries(redis, keys):
        if fields.get(b"type") == b"MessageReceived":
            message_ids.add(json.loads(fields[b"body"])["message_id"])
    stuck = await _project_everything(settings, redis)
    connection = await asyncpg.connect(settings.database_url)
    try:
        rows = {str(r["id"]) for r in await connection.fetch("SELECT id FROM messages")}
    finally:
        await connection.close()
    letters = await dead_letters(redis, keys)
    unprojected = message_ids - rows
    sent = sum(statuses.values())
    print(f"\nfuzz: {sent} inputs in {fuzz_seconds:.1f}s, answers {dict(statuses)}; "
          f"{appended} messages appended, {len(rows)} projected, {len(letters)} dead letters "
          f"{describe_dead_letters(letters)}; {stuck or 'projector caught up'}; "
          f"retried: {_retry_errors(caplog.records)}")
    fault_table.add(FaultRow(
        scenario="fuzz (hypothesis)", webhooks_sent=sent, accepted=statuses[200],
        appended=appended, projected=len(rows), lost=len(unprojected),
        server_errors=sum(c for s, c in statuses.items() if s >= 500)))
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors[:5]]
    assert stuck == "", f"{stuck}; retried errors: {_retry_errors(caplog.records)}"
    assert letters == [], describe_dead_letters(letters)
    assert unprojected == set(), f"{len(unprojected)} accepted messages cannot be projected"
