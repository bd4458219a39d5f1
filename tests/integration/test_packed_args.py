"""Values packed in one script argument reach Lua as the plain arguments they replace."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.platform.eventlog.lua import PACKED_ARGS_LUA, packed_args, script
from app.platform.redis_client import open_redis
from tests.conftest import TestServers

# Reads one plain argument, then every packed value: each as Lua's type and its text.
ECHO_PACKED = script(PACKED_ARGS_LUA, """
local plain = next_arg()
unpack_args()
local seen = {plain}
while has_more_args() do
  local value = next_arg()
  seen[#seen + 1] = type(value) .. ':' .. tostring(value)
end
return seen
""")


@pytest.fixture
async def client(servers: TestServers) -> AsyncIterator[Redis]:
    opened = open_redis(servers.redis_url)
    yield opened  # type: ignore[misc]
    await opened.aclose()


async def test_packed_values_reach_lua_as_the_same_strings_and_numbers(client: Redis) -> None:
    texts = ["", "1", "héllo wörld ✓", "nul\x00inside", "x" * 70_000, '{"a":"b"}']
    echo = client.register_script(ECHO_PACKED)

    seen = await echo(keys=[], args=["plain", packed_args([*texts, 1_764_460_800_123])])

    assert [value.decode() for value in seen] == [
        "plain", *(f"string:{text}" for text in texts), "number:1764460800123"]


async def test_packed_bytes_fail_the_script_instead_of_reaching_it(client: Redis) -> None:
    echo = client.register_script(ECHO_PACKED)

    with pytest.raises(ResponseError):
        await echo(keys=[], args=["plain", packed_args([b"bytes"])])  # type: ignore[list-item]
