"""The suite's per-test time limit (pyproject's ``timeout``, tests/time_limit.py): a hung
test fails with the stacks of its pending asyncio tasks, and the run stops after it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HUNG_SUITE = '''
import asyncio


async def wait_forever() -> None:
    await asyncio.Event().wait()


async def test_hangs() -> None:
    await asyncio.create_task(wait_forever())


def test_after() -> None:
    pass
'''


def test_a_hung_test_fails_with_its_tasks_stacks_and_ends_the_run(tmp_path: Path) -> None:
    (tmp_path / "test_hung.py").write_text(HUNG_SUITE)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.time_limit",
         "-o", "asyncio_mode=auto", "-o", "timeout=1", "test_hung.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "Timeout (>1.0s) from pytest-timeout." in out
    assert "pending asyncio tasks" in out and "in wait_forever" in out
    assert "test_hung.py::test_hangs hit the per-test time limit during its call" in out
    assert "1 failed in" in out and "passed" not in out  # test_after never ran


def test_the_suite_has_a_time_limit_and_a_last_resort_exit_after_every_test_s_limit() -> None:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"]
    marked = [int(limit) for path in (ROOT / "tests").rglob("test_*.py")
              for limit in re.findall(r"mark\.timeout\((\d+)\)", path.read_text())]
    assert marked  # the soak tests' own limit
    assert 0 < max([int(options["timeout"]), *marked]) < float(options["faulthandler_timeout"])
    assert options["faulthandler_exit_on_timeout"] is True
