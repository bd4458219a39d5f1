"""Script calls down a connection held aside: the same replies and errors as redis-py's path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from app.platform.direct_scripts import DirectScripts
from app.platform.redis_client import DurableWrites, open_redis
from tests.conftest import TestServers

ECHO = "return {KEYS[1], ARGV[1], ARGV[2]}"
# Sleeps about ``ARGV[1]`` ms inside Redis (a busy loop: scripts cannot block), then answers.
SLOW_ECHO = """
local started = redis.call('TIME')
local stop = tonumber(started[1]) * 1000000 + tonumber(started[2]) + tonumber(ARGV[1]) * 1000
while true do
  local now = redis.call('TIME')
  if tonumber(now[1]) * 1000000 + tonumber(now[2]) >= stop then break end
end
return ARGV[2]
"""


@pytest.fixture
async def client(servers: TestServers) -> AsyncIterator[Redis]:
    opened = open_redis(servers.redis_url)
    yield opened  # type: ignore[misc]
    await opened.aclose()


async def test_a_script_answers_as_through_redis_py(client: Redis, key_prefix: str) -> None:
    direct = DirectScripts(client)
    assert direct.enabled
    echo = client.register_script(ECHO)
    keys, args = [f"{key_prefix}:k"], ["héllo", 42]
    assert await direct.run(echo, keys, args) == await echo(keys=keys, args=args)
    assert await direct.run(echo, keys, args) == [f"{key_prefix}:k".encode(), "héllo".encode(),
                                                  b"42"]
    await direct.aclose()


async def test_a_script_redis_forgot_is_loaded_again(client: Redis, key_prefix: str) -> None:
    direct = DirectScripts(client)
    echo = client.register_script(ECHO)
    await client.script_flush()
    assert await direct.run(echo, [f"{key_prefix}:k"], ["a", "b"]) == [
        f"{key_prefix}:k".encode(), b"a", b"b"]
    await direct.aclose()


async def test_a_script_error_is_raised_and_the_connection_stays_usable(
    client: Redis, key_prefix: str
) -> None:
    direct = DirectScripts(client)
    failing = client.register_script("return redis.call('NOSUCHCOMMAND')")
    echo = client.register_script(ECHO)
    with pytest.raises(ResponseError):
        await direct.run(failing, [f"{key_prefix}:k"], [])
    assert await direct.run(echo, [f"{key_prefix}:k"], ["after", "error"]) == [
        f"{key_prefix}:k".encode(), b"after", b"error"]
    await direct.aclose()


async def test_a_cancelled_call_never_hands_its_reply_to_the_next_call(
    client: Redis, key_prefix: str
) -> None:
    direct = DirectScripts(client)
    slow = client.register_script(SLOW_ECHO)
    await slow(keys=[f"{key_prefix}:k"], args=[0, "warm"])  # loaded: EVALSHA finds it
    call = asyncio.ensure_future(direct.run(slow, [f"{key_prefix}:k"], [50, "first"]))
    await asyncio.sleep(0.01)  # sent, its reply not read yet
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.1)  # the first reply would be waiting on a kept connection by now
    assert await direct.run(slow, [f"{key_prefix}:k"], [0, "second"]) == b"second"
    await direct.aclose()


async def test_a_connection_redis_closed_falls_back_to_redis_py(
    client: Redis, key_prefix: str
) -> None:
    direct = DirectScripts(client)
    echo = client.register_script(ECHO)
    await direct.run(echo, [f"{key_prefix}:k"], ["a", "b"])
    killer = Redis(connection_pool=client.connection_pool)
    killed = await killer.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1  # the connection held aside among them
    assert await direct.run(echo, [f"{key_prefix}:k"], ["c", "d"]) == [
        f"{key_prefix}:k".encode(), b"c", b"d"]
    await direct.aclose()


async def test_a_connection_that_dies_while_opening_is_a_connection_error(
    client: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What CI saw when Redis was SIGKILLed: the connection held aside was closed, and the
    fallback's new connection failed with uvloop's RuntimeError (a closed transport) inside
    redis-py's handshake. It must reach the ingress as a ConnectionError (503), not a 500."""
    direct = DirectScripts(client)
    echo = client.register_script(ECHO)

    async def dies_while_opening(*_: object, **__: object) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; "
                           "the handler is closed")

    monkeypatch.setattr(client.connection_pool, "get_connection", dies_while_opening)
    with pytest.raises(RedisConnectionError):  # no connection aside: the direct path opens one
        await direct.run(echo, [f"{key_prefix}:k"], ["a", "b"])
    monkeypatch.undo()
    await direct.run(echo, [f"{key_prefix}:k"], ["a", "b"])  # one connection now held aside
    killer = Redis(connection_pool=client.connection_pool)
    assert await killer.client_kill_filter(_type="normal", skipme=True) >= 1
    monkeypatch.setattr(client.connection_pool, "get_connection", dies_while_opening)
    with pytest.raises(RedisConnectionError):  # the held one is dead; the fallback opens one
        await direct.run(echo, [f"{key_prefix}:k"], ["c", "d"])
    monkeypatch.undo()
    await direct.aclose()


async def test_a_client_it_cannot_hold_connections_of_goes_through_redis_py(
    servers: TestServers, key_prefix: str
) -> None:
    plain = Redis.from_url(servers.redis_url)  # redis-py's own packing: not taken aside
    try:
        direct = DirectScripts(plain)
        assert not direct.enabled
        echo = plain.register_script(ECHO)
        assert await direct.run(echo, [f"{key_prefix}:k"], ["x", "y"]) == [
            f"{key_prefix}:k".encode(), b"x", b"y"]
    finally:
        await plain.aclose()


async def test_durable_writes_call_scripts_directly_only_without_replicas(
    client: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    echo = client.register_script(ECHO)
    sent: list[str] = []
    run = DirectScripts.run

    async def spy(self: DirectScripts, *args: object) -> object:
        sent.append("direct")
        return await run(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(DirectScripts, "run", spy)
    writes = DurableWrites(client)
    assert await writes.script(f"{key_prefix}:k", echo, [f"{key_prefix}:k"], ["a", "b"]) == [
        f"{key_prefix}:k".encode(), b"a", b"b"]
    assert sent == ["direct"]
    await writes.aclose()


async def test_a_call_is_written_at_once_unless_a_health_check_is_due(
    client: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write skips redis-py's ``send_packed_command`` (and its ``wait_for`` task) only
    when that would not wait or ping; a due health check still goes through it."""
    direct = DirectScripts(client)
    echo = client.register_script(ECHO)
    keys = [f"{key_prefix}:k"]
    assert await direct.run(echo, keys, ["1", "a"]) == [keys[0].encode(), b"1", b"a"]
    connection = direct._idle[-1]
    sent: list[object] = []
    original = type(connection).send_packed_command

    async def recording(self: object, command: object, check_health: bool = True) -> None:
        sent.append(command)
        await original(self, command, check_health)  # type: ignore[arg-type]

    monkeypatch.setattr(type(connection), "send_packed_command", recording)
    assert await direct.run(echo, keys, ["2", "b"]) == [keys[0].encode(), b"2", b"b"]
    assert sent == []  # written at once
    connection.next_health_check = -1.0  # a ping is due: redis-py's path sends it first
    assert await direct.run(echo, keys, ["3", "c"]) == [keys[0].encode(), b"3", b"c"]
    assert len(sent) == 2  # the script call, then the health check's PING it sent first
    assert b"EVALSHA" in sent[0][0] and sent[1] == [b"*1\r\n$4\r\nPING\r\n"]  # type: ignore[index]
    await direct.aclose()
