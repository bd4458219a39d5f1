"""The benchmark's peers are never skipped silently: a peer that cannot run says why, in the
printed output and in the table ("not measured: <why>")."""

from __future__ import annotations

import pytest

from bench import peer_env
from bench.figures import render_table
from bench.ingress import (
    BARE,
    EXPRESS,
    FASTIFY,
    INGRESS,
    PEER,
    RAW,
    IngressOptions,
    Run,
    available_peers,
    figures_from,
)
from bench.load_generators import LoadResult


def _run(target: str, requests: int) -> Run:
    load = LoadResult("wrk", requests, 1.0, 0, 0, 0, 1.0, 2.0)
    return Run(target, 1, load, cpu_s=requests * 100e-6)


async def test_node_peer_is_unavailable_without_node_on_the_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(peer_env.shutil, "which", lambda name: None)
    with pytest.raises(peer_env.PeerUnavailable, match="node and npm not found on PATH"):
        await peer_env.ensure_node_peer()


async def test_no_peer_option_builds_nothing_and_notes_every_peer() -> None:
    python, node, notes = await available_peers(IngressOptions(peer=False))
    assert (python, node) == (None, None)
    assert notes == {name: "not measured: --no-peer" for name in (PEER, FASTIFY, EXPRESS)}


def test_a_peer_not_run_is_reported_not_measured_with_its_reason() -> None:
    runs = [_run(BARE, 8_000), _run(INGRESS, 4_000), _run(PEER, 2_000)]
    notes = {FASTIFY: "not measured: node not found on PATH", EXPRESS: "not measured: --no-peer"}
    figures = {f.name: f for f in figures_from(runs, notes)}
    fastify = figures["ingress req/s vs Fastify+BullMQ (Node, per core)"]
    assert fastify.value is None
    assert fastify.note == "not measured: node not found on PATH"
    table = render_table(list(figures.values()))
    fastify_line = next(line for line in table.splitlines() if "Fastify" in line)
    assert "not measured: node not found on PATH" in fastify_line
    assert fastify_line.rstrip().endswith("n/a")
    assert figures["ingress req/s vs FastAPI+arq"].ratio == pytest.approx(2.0)


def test_fastify_ratio_and_cpu_come_from_its_runs() -> None:
    runs = [_run(BARE, 8_000), _run(INGRESS, 4_000), _run(FASTIFY, 5_000)]
    figures = {f.name: f for f in figures_from(runs, {})}
    fastify = figures["ingress req/s vs Fastify+BullMQ (Node, per core)"]
    assert fastify.ratio == pytest.approx(0.8)
    assert fastify.met is False
    cpu = figures["ingress CPU per request vs Fastify+BullMQ (info)"]
    assert (cpu.value, cpu.baseline) == (pytest.approx(100.0), pytest.approx(100.0))


def test_raw_asgi_is_info_against_fastify_and_under_bare_and_ingress() -> None:
    runs = [_run(RAW, 20_000), _run(BARE, 8_000), _run(INGRESS, 4_000), _run(FASTIFY, 5_000)]
    figures = {f.name: f for f in figures_from(runs, {})}
    raw = figures["raw ASGI req/s vs Fastify+BullMQ (per core, info)"]
    assert raw.ratio == pytest.approx(4.0)
    assert raw.target is None
    assert figures["ingress CPU per request vs raw ASGI (info)"].target is None
    assert figures["ingress CPU per request vs bare Litestar"].target is not None


async def test_targets_not_picked_are_noted_and_not_built() -> None:
    options = IngressOptions(targets=(RAW, BARE, INGRESS))
    figures = {f.name: f for f in figures_from([_run(RAW, 9_000)], {})}
    assert "raw ASGI req/s vs Fastify+BullMQ (per core, info)" not in figures
    python, node, notes = await available_peers(options)
    assert (python, node) == (None, None)
    assert set(notes) == {PEER, FASTIFY, EXPRESS}
