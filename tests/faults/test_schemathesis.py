"""Schemathesis against a running ``mecove api``: every operation of its OpenAPI schema,
positive and negative cases, never a server error (and no ERROR line in the process log).

Litestar cannot see what a handler reads from the raw request (the webhook body, Meta's
``hub.*`` verification parameters), so the served schema is completed with that contract
before generating cases; everything else is the schema exactly as ``/schema/openapi.json``
serves it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation

from app.devtools.ports import free_port
from app.platform.settings import Settings
from tests.faults.fault_table import FaultRow, FaultTable
from tests.faults.pipeline import Pipeline

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 60
HUB_PARAMETERS = ("hub.mode", "hub.verify_token", "hub.challenge")


def with_meta_contract(served: dict[str, Any]) -> dict[str, Any]:
    """The served schema plus what Meta sends: ``hub.*`` query strings and a JSON body."""
    schema = copy.deepcopy(served)
    webhook = schema["paths"]["/webhooks/whatsapp"]
    webhook["get"]["parameters"] = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in HUB_PARAMETERS
    ]
    webhook["post"]["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {}}},
    }
    return schema


def _fetch_schema(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/schema/openapi.json", timeout=10) as response:  # noqa: S310 - a local process
        return dict(json.loads(response.read()))


def _fuzz_operation(operation: APIOperation, mode: GenerationMode, base_url: str,
                    answers: Counter[tuple[str, int]]) -> None:
    @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(base_url=base_url, checks=[not_a_server_error],
                                          timeout=30)
        answers[(operation.label, response.status_code)] += 1

    try:
        call()
    except Unsatisfiable:
        pass  # nothing invalid can be built for this operation (e.g. it takes no input)


def _run_schemathesis(base_url: str) -> Counter[tuple[str, int]]:
    """Every operation, positive then negative cases; (operation, status) -> calls."""
    schema = schemathesis.openapi.from_dict(with_meta_contract(_fetch_schema(base_url)))
    answers: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the served schema is invalid: {result.err()}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(result.ok(), mode, base_url, answers)
    return answers


async def test_schemathesis_finds_no_server_error_in_the_ingress(
    settings: Settings, tmp_path: Path, fault_table: FaultTable,
) -> None:
    # No app secret: generated bodies reach the parser instead of stopping at the signature.
    api_settings = msgspec.structs.replace(settings, port=free_port(), whatsapp_app_secret=None)
    with Pipeline(api_settings, tmp_path, MECOVE_DEBUG="1") as pipeline:
        name = await pipeline.start_api()
        try:
            answers = await asyncio.to_thread(_run_schemathesis, pipeline.base_url)
        finally:
            unclean = pipeline.unclean_exits(pipeline.stop_all())
    log = (tmp_path / f"{name}.log").read_text(errors="replace")
    error_lines = [line for line in log.splitlines() if '"level":"error"' in line
                   or "Traceback" in line]
    statuses: Counter[int] = Counter()
    for (_, status), count in answers.items():
        statuses[status] += count
    print(f"\nschemathesis: {sum(statuses.values())} calls: " + ", ".join(
        f"{label} {status}: {count}" for (label, status), count in sorted(answers.items())))
    fault_table.add(FaultRow(
        scenario="schemathesis (OpenAPI)", webhooks_sent=sum(statuses.values()),
        accepted=sum(c for s, c in statuses.items() if 200 <= s < 300),
        server_errors=sum(c for s, c in statuses.items() if s >= 500)))
    assert error_lines == [], error_lines[:5]
    assert unclean == {}
