"""``mecove rotate-master-key``: re-wrap every content key with the current master key.

Procedure (docs/decisions/0010): deploy every process with the new key in MECOVE_MASTER_KEY and
the old one in MECOVE_PREVIOUS_MASTER_KEY (both unwrap), run this command, then remove
MECOVE_PREVIOUS_MASTER_KEY. Data keys do not change, so no content is re-encrypted.
"""

from __future__ import annotations

import asyncpg

from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from app.platform.redis_client import RedisClient

SCAN_COUNT = 1_000


async def rotate_master_key(redis: RedisClient, keys: Keys, database_url: str,
                            master: MasterKeys | None) -> int:
    """Re-wrap keys not wrapped by the current master key, in PostgreSQL and Redis; returns
    how many were re-wrapped (each copy counts once)."""
    assert master is not None
    rewrapped = 0
    connection = await asyncpg.connect(database_url)
    try:
        for row in await connection.fetch("SELECT key_id, wrapped_key FROM user_keys"):
            if master.is_current(row["wrapped_key"]):
                continue
            fresh = master.rewrap(row["wrapped_key"], row["key_id"])
            await connection.execute("UPDATE user_keys SET wrapped_key = $2 WHERE key_id = $1",
                                     row["key_id"], fresh)
            rewrapped += 1
    finally:
        await connection.close()
    # On a RedisCluster, redis-py's scan_iter scans every master (SCAN goes to all primaries,
    # since redis-py 5.0); tests/cluster checks hashes on several masters are re-wrapped.
    async for name in redis.scan_iter(match=f"{keys.prefix}:*:contentkey:*", count=SCAN_COUNT):
        key_id, wrapped = await redis.hmget(name, "id", "wrapped")
        if key_id is None or wrapped is None or master.is_current(as_text(wrapped)):
            continue
        await redis.hset(name, "wrapped", master.rewrap(as_text(wrapped), as_text(key_id)))
        rewrapped += 1
    return rewrapped
