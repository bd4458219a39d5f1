"""One ``mecove dev`` per data folder: the lock, the published URLs, a stale file ignored."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.devtools.dev_instance import DataFolderBusy, DevInstance, running_dev

URLS = {"webhook": "http://127.0.0.1:8000/webhooks/whatsapp",
        "database_url": "postgresql://postgres@127.0.0.1:5999/mecove",
        "redis_url": "redis://127.0.0.1:6999/0"}


def test_a_second_instance_refuses_naming_the_first_and_its_webhook(tmp_path: Path) -> None:
    first = DevInstance(tmp_path).acquire()
    first.publish(**URLS)
    try:
        with pytest.raises(DataFolderBusy) as refused:
            DevInstance(tmp_path).acquire()
    finally:
        first.release()

    assert f"pid {os.getpid()}" in str(refused.value)
    assert URLS["webhook"] in str(refused.value) and "\n" not in str(refused.value)


def test_published_urls_are_found_while_the_instance_runs_and_gone_after(
    tmp_path: Path,
) -> None:
    instance = DevInstance(tmp_path).acquire()
    assert running_dev(tmp_path) is None  # still starting: nothing published yet
    instance.publish(**URLS)

    found = running_dev(tmp_path)
    instance.release()

    assert found is not None and (found.pid, found.redis_url) == (os.getpid(),
                                                                  URLS["redis_url"])
    assert running_dev(tmp_path) is None
    DevInstance(tmp_path).acquire().release()  # the folder is free again


def test_urls_left_by_a_killed_run_are_not_taken_for_a_running_one(tmp_path: Path) -> None:
    instance = DevInstance(tmp_path).acquire()
    instance.publish(**URLS)
    (tmp_path / "urls.json").rename(tmp_path / "kept.json")
    instance.release()  # as the kernel does for a killed process: the lock goes, not the file
    (tmp_path / "kept.json").rename(tmp_path / "urls.json")

    assert running_dev(tmp_path) is None
