"""The ingress benchmark's Redis CPU per request: the Redis's CPU over the measured window
divided by the requests of that window, the lowest run of each target, and "not measured"
when the Redis is not on this machine."""

from __future__ import annotations

import pytest

from bench.ingress import BARE, FASTIFY, INGRESS, Run, figures_from, is_local_redis
from bench.load_generators import LoadResult

NAME = f"ingress Redis CPU per request vs {FASTIFY} (info)"


def _run(target: str, requests: int, redis_cpu_s: float | None) -> Run:
    load = LoadResult("wrk", requests, 1.0, 0, 0, 0, 1.0, 2.0)
    return Run(target, 1, load, cpu_s=requests * 100e-6, redis_cpu_s=redis_cpu_s)


def test_redis_cpu_per_request_is_the_windows_redis_cpu_over_its_requests() -> None:
    assert _run(INGRESS, 5_000, 0.25).redis_cpu_us_per_request == pytest.approx(50.0)
    assert _run(INGRESS, 5_000, None).redis_cpu_us_per_request is None
    assert _run(INGRESS, 0, 0.25).redis_cpu_us_per_request is None


def test_figure_compares_the_lowest_ingress_run_with_the_lowest_fastify_run() -> None:
    runs = [_run(INGRESS, 4_000, 0.2), _run(INGRESS, 5_000, 0.2),
            _run(FASTIFY, 5_000, 0.18), _run(FASTIFY, 6_000, 0.3), _run(BARE, 8_000, 0.0)]
    figure = {f.name: f for f in figures_from(runs, {})}[NAME]
    assert (figure.value, figure.baseline) == (pytest.approx(40.0), pytest.approx(36.0))
    assert figure.ratio == pytest.approx(40.0 / 36.0)
    assert figure.note == ""


def test_figure_says_not_measured_without_the_redis_cpu() -> None:
    runs = [_run(INGRESS, 4_000, None), _run(FASTIFY, 5_000, None)]
    figure = {f.name: f for f in figures_from(runs, {})}[NAME]
    assert figure.value is None and figure.baseline is None
    assert figure.note.startswith("not measured")


def test_only_a_redis_on_this_machine_is_measured() -> None:
    assert is_local_redis("redis://127.0.0.1:6379/0")
    assert is_local_redis("redis://localhost/0")
    assert is_local_redis("unix:///tmp/redis.sock")
    assert not is_local_redis("redis://redis.example.com:6379/0")
