"""Embedded PostgreSQL and Redis in one data folder: what ``mecove dev`` and the test fixtures
start when no server is given.

Layout of the folder::

    postgres/        the PostgreSQL cluster (owned by ``embedded_postgres`` when run as root)
    redis/           appendonly.aof (and the pid file)
    logs/            postgres.log, redis.log
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.devtools.embedded.postgres_server import EmbeddedPostgres
from app.devtools.embedded.redis_server import EmbeddedRedis
from app.devtools.embedded.server_process import quiet


class EmbeddedServers:
    """Either or both embedded servers of one data folder; ``stop()`` stops what was started.

    Usable as a context manager; a failure while starting stops what had already started.
    """

    def __init__(self, data_dir: Path, *, postgres: bool = True, redis: bool = True,
                 report: Callable[[str], None] = quiet) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        logs = self.data_dir / "logs"
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres",
                                         log_path=logs / "postgres.log",
                                         report=report) if postgres else None
        self.redis = EmbeddedRedis(self.data_dir / "redis", log_path=logs / "redis.log",
                                   report=report) if redis else None

    def start(self) -> EmbeddedServers:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            if self.redis is not None:
                self.redis.start()
            if self.postgres is not None:
                self.postgres.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop PostgreSQL, then Redis; safe to call more than once."""
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()

    @property
    def admin_database_url(self) -> str:
        if self.postgres is None:
            raise RuntimeError("no embedded PostgreSQL in this set")
        return self.postgres.admin_url

    @property
    def redis_url(self) -> str:
        if self.redis is None:
            raise RuntimeError("no embedded Redis in this set")
        return self.redis.url

    def exited(self) -> str | None:
        """One line naming a server that has exited by itself (None while all run)."""
        for embedded in (self.postgres, self.redis):
            server = embedded.server if embedded is not None else None
            if server is not None and not server.alive():
                return (f"embedded {server.name} (pid {server.pid}) exited with code "
                        f"{server.process.returncode}; see {server.log_path}")
        return None

    def pids(self) -> list[int]:
        """Process ids of the running servers (PostgreSQL's postmaster, redis-server)."""
        servers = [s.server for s in (self.postgres, self.redis) if s is not None]
        return [s.pid for s in servers if s is not None]

    def __enter__(self) -> EmbeddedServers:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
