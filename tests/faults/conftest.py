"""Fixtures of the fault suite: the fakes as processes, settings of a whole pipeline, and the
fault table.

Every test of this package may add a row to the fault table; the rows are printed as one
table at the end of the run by ``pytest_terminal_summary`` (with or without ``-s``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgspec
import pytest
from _pytest.terminal import TerminalReporter

from app.platform.settings import Settings
from tests.faults.fake_processes import FakeProcess, graph_process, groq_process
from tests.faults.fault_table import FaultTable

GRAPH_TOKEN = "faults-graph-token-7c1d0e5a9b"
GROQ_KEY = "gsk_faults_key_40b8a17e22"
PHONE_NUMBER_ID = "1122334455667"

_TABLE = pytest.StashKey[FaultTable]()


def _table(config: pytest.Config) -> FaultTable:
    if _TABLE not in config.stash:
        config.stash[_TABLE] = FaultTable()
    return config.stash[_TABLE]


@pytest.fixture
def fault_table(request: pytest.FixtureRequest) -> FaultTable:
    """Where a test records its figures for the end-of-run table."""
    return _table(request.config)


def pytest_terminal_summary(terminalreporter: TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    table = config.stash.get(_TABLE, None)
    if table is None or not table.rows():
        return
    terminalreporter.write_sep("=", "fault tolerance (tests/faults)")
    for line in table.render():
        terminalreporter.write_line(line)


@dataclass(frozen=True, slots=True)
class Fakes:
    graph: FakeProcess
    groq: FakeProcess


@pytest.fixture
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fakes]:
    """The fake Graph API and the echoing fake Groq, each in its own process."""
    log_dir = tmp_path_factory.mktemp("fakes")
    with graph_process(GRAPH_TOKEN, PHONE_NUMBER_ID, log_dir) as graph, \
            groq_process(GROQ_KEY, log_dir) as groq:
        yield Fakes(graph, groq)


@pytest.fixture
def pipeline_settings(settings: Settings, fakes: Fakes) -> Settings:
    """The test's settings, pointed at the fake Graph API and the fake Groq."""
    return msgspec.structs.replace(
        settings,
        whatsapp_phone_number_id=PHONE_NUMBER_ID,
        whatsapp_permanent_token=GRAPH_TOKEN,
        whatsapp_api_base_url=fakes.graph.base_url,
        whatsapp_api_version="v21.0",
        groq_api_key=GROQ_KEY,
        groq_base_url=fakes.groq.base_url,
    )
