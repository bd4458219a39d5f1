"""The one ``mecove dev`` of a data folder: its lock, and the URLs it publishes.

``mecove dev`` holds an exclusive ``flock`` on ``<data dir>/dev.lock`` (which holds its pid)
from before it touches anything until it has stopped its servers: a second ``mecove dev`` on
the same folder refuses with one line naming the first, instead of taking its servers for
left-overs. Once its servers are ready it writes ``<data dir>/urls.json`` (pid, webhook,
``DATABASE_URL``, ``REDIS_URL``), which the operator's commands read when no URL is given.
The kernel drops the lock when the process dies, however it dies, so a ``urls.json`` left by
a killed run is recognised as stale: it counts only while its lock is held.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import msgspec

__all__ = ["DataFolderBusy", "DevInstance", "PublishedUrls", "running_dev"]

LOCK_FILE = "dev.lock"
URLS_FILE = "urls.json"
_ACQUIRE_TRIES = 10  # a running ops command probes the lock for an instant; let it finish
_ACQUIRE_PAUSE_S = 0.05


class DataFolderBusy(Exception):
    """Another ``mecove dev`` holds the data folder; the message is one line naming it."""


class PublishedUrls(msgspec.Struct, frozen=True):
    """What a running ``mecove dev`` publishes in ``urls.json``."""

    pid: int
    webhook: str
    database_url: str
    redis_url: str


def _read_urls(data_dir: Path) -> PublishedUrls | None:
    try:
        return msgspec.json.decode((data_dir / URLS_FILE).read_bytes(), type=PublishedUrls)
    except (OSError, msgspec.DecodeError):
        return None


def _read_pid(data_dir: Path) -> str:
    try:
        return (data_dir / LOCK_FILE).read_text().strip() or "?"
    except OSError:
        return "?"


def _is_locked(lock_path: Path) -> bool:
    """True while some process holds the lock on ``lock_path`` (probed without blocking)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return False


def running_dev(data_dir: Path) -> PublishedUrls | None:
    """The URLs of the ``mecove dev`` running on ``data_dir``; None if none runs (or it is
    still starting)."""
    urls = _read_urls(data_dir)
    if urls is None or not _is_locked(data_dir / LOCK_FILE):
        return None
    return urls


class DevInstance:
    """The lock of one data folder, held by this process from ``acquire()`` to ``release()``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._fd: int | None = None

    def acquire(self) -> DevInstance:
        """Take the lock and write our pid in it; DataFolderBusy if another process holds it."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        for attempt in range(_ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 < _ACQUIRE_TRIES:
                    time.sleep(_ACQUIRE_PAUSE_S)
        else:
            os.close(fd)
            raise DataFolderBusy(self._busy_line())
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        (self.data_dir / URLS_FILE).unlink(missing_ok=True)  # a killed run's, now stale
        return self

    def publish(self, *, webhook: str, database_url: str, redis_url: str) -> None:
        """Write ``urls.json`` (replaced atomically, readable by this user only)."""
        urls = PublishedUrls(os.getpid(), webhook, database_url, redis_url)
        fresh = self.data_dir / (URLS_FILE + ".new")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.encode(urls))
        fresh.replace(self.data_dir / URLS_FILE)

    def release(self) -> None:
        """Remove ``urls.json`` and drop the lock; safe to call more than once."""
        if self._fd is None:
            return
        (self.data_dir / URLS_FILE).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def _busy_line(self) -> str:
        urls = _read_urls(self.data_dir)
        where = f"webhook {urls.webhook}" if urls else "still starting"
        pid = urls.pid if urls else _read_pid(self.data_dir)
        return (f"{self.data_dir} is in use by another mecove dev (pid {pid}, {where}); "
                "stop it first, or give this one another --data-dir")
