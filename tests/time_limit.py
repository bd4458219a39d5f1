"""What the suite does when a test hits its time limit (``timeout`` in pyproject's
``[tool.pytest.ini_options]``, enforced by pytest-timeout).

pytest-timeout fails the test with its main thread's traceback and the other threads' stacks.
A hung test here is usually an ``await`` that never completes, where the main thread only
shows the event loop waiting in ``select``: the report gains a section with the stack of every
pending asyncio task. Then the run ends after the test's teardown: what hung it (a wedged
server, a lost wakeup) would likely hang the next tests too, each for the whole limit.
"""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import Generator

import pytest

TIMEOUT_FAILURE = "from pytest-timeout."  # the end of pytest-timeout's failure message


def timed_out(call: pytest.CallInfo[None]) -> bool:
    return (call.excinfo is not None and call.excinfo.errisinstance(pytest.fail.Exception)
            and str(call.excinfo.value).endswith(TIMEOUT_FAILURE))


def pending_task_stacks() -> str:
    """The stack of every pending asyncio task, on any loop (found through the collector:
    the loop of the test's scope is not running when the report is made)."""
    out = io.StringIO()
    tasks = [t for t in gc.get_objects() if isinstance(t, asyncio.Task) and not t.done()]
    for task in tasks:
        task.print_stack(file=out)
    return out.getvalue() or "no pending asyncio task\n"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if timed_out(call):
        report.sections.append(("pending asyncio tasks", pending_task_stacks()))
        item.session.shouldfail = (f"{item.nodeid} hit the per-test time limit during its "
                                   f"{call.when}; the run stops here")
    return report
