"""Ingress throughput: signed webhooks at ``mecove api`` vs two baselines, in one run.

Targets, each one uvicorn worker with the options of ``mecove api``, each loaded the same way
(closed loop, fixed connections, a distinct signed body and wamid per request):

* **ingress** — ``python -m app.cli api``: signature, msgspec parse, one Lua step per delivery
  (dedupe + XADD + ZADD), 200 once the event is in the log;
* **bare** — a Litestar endpoint that only reads the body (the ceiling of the stack);
* **raw ASGI** (info) — a raw ASGI app, no framework, that reads the body and answers 200: the
  floor of the server itself, the best any Python app under this uvicorn can reach;
* **peers** — what other teams would write, each one process (per core): FastAPI + arq
  ``enqueue_job`` (``bench/servers/fastapi_arq.py``); Fastify + BullMQ and Express + BullMQ
  ``queue.add`` on Node (``bench/servers/node_bullmq/``); one job per message, wamid as job id.

A peer whose environment cannot be built (no ``node``, no registry...) is skipped with the
reason printed, and its figures say "not measured: <why>"; ``--no-peer`` skips them all.

Rounds interleave the targets (raw ASGI, bare, ingress, peers, raw ASGI, ...); ``--targets``
picks some of them. The summary takes the round
with the best ingress run and that same round's baselines, so each ratio compares servers
measured under the same machine conditions; every run is printed. CPU time per request of
each server process is printed too: unlike req/s it hardly moves when other work shares the
machine. So is the CPU time of the Redis the bench uses (``INFO cpu``, used_cpu_user + sys,
over the measured window), per request, when that Redis is on this machine: the ingress's
append script against BullMQ's (info; "not measured" for a remote Redis or without ``INFO``).
A Redis shared with other work counts that work too: point ``--redis-url`` at a private one.

``python -m bench.ingress --seconds 10 [--targets raw bare ingress fastify]``
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.cli import UVICORN_OPTIONS
from app.devtools.ports import free_port
from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from bench.cpu_placement import CpuPlacement
from bench.figures import Check, Figure, Target
from bench.load_generators import LoadResult, load_generator_name, run_load
from bench.numbered_messages import APP_SECRET, WEBHOOK_PATH, signed_bodies, write_bodies_file
from bench.peer_env import (
    NODE_PEER_DIR,
    NodePeer,
    PeerUnavailable,
    ensure_node_peer,
    ensure_peer_python,
)
from bench.processes import (
    ProcessSet,
    Service,
    bare_litestar_command,
    clean_env,
    cpu_seconds,
    mecove_command,
    raw_asgi_command,
    start_py_spy,
    wait_for_http,
    work_directory,
)
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.standalone import run_standalone

INGRESS = "ingress"
BARE = "bare Litestar"
RAW = "raw ASGI"
PEER = "FastAPI+arq"
FASTIFY = "Fastify+BullMQ"
EXPRESS = "Express+BullMQ"
PEER_SCRIPT = Path(__file__).resolve().parent / "servers" / "fastapi_arq.py"
NODE_SCRIPTS = {FASTIFY: "fastify_server.js", EXPRESS: "express_server.js"}
BULLMQ_QUEUE = "webhooks"
FIRST_GUESS_RPS = 4_000  # sizes the warm-up bodies before anything is measured
# --targets names, in the order each round runs them.
TARGET_NAMES = {
    "raw": RAW,
    "bare": BARE,
    "ingress": INGRESS,
    "fastapi": PEER,
    "fastify": FASTIFY,
    "express": EXPRESS,
}


@dataclass(frozen=True, slots=True)
class IngressOptions:
    seconds: float = 10.0
    warmup_seconds: float = 2.0
    connections: int = 32
    rounds: int = 2
    senders: int = 1_000  # distinct users; messages cycle over them
    peer: bool = True  # False: no peer at all (no virtualenv, no npm)
    express: bool = True  # the Express+BullMQ peer (same handler and install as Fastify)
    py_spy: Path | None = None  # profile one extra ingress run into this file
    targets: tuple[str, ...] = tuple(TARGET_NAMES.values())  # those to run, if they can
    admin_database_url: str = DEFAULT_ADMIN_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    pin: bool = True  # each server on a core of its own (bench/cpu_placement.py)


@dataclass(slots=True)
class Run:
    target: str
    round: int
    load: LoadResult
    cpu_s: float  # CPU time the server process used during the measured load
    check: str = ""  # what landed in Redis, e.g. "log +123 entries"
    redis_cpu_s: float | None = None  # Redis's CPU time meanwhile (None: not measured)

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.load.requests * 1e6 if self.load.requests else 0.0

    @property
    def redis_cpu_us_per_request(self) -> float | None:
        if self.redis_cpu_s is None or not self.load.requests:
            return None
        return self.redis_cpu_s / self.load.requests * 1e6


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local_redis(url: str) -> bool:
    """Whether the Redis at ``url`` runs on this machine (its CPU is then this bench's)."""
    parsed = urlsplit(url)
    return parsed.scheme == "unix" or parsed.hostname in LOCAL_HOSTS


async def redis_cpu_seconds(url: str) -> float | None:
    """``INFO cpu`` used_cpu_user + used_cpu_sys of a local Redis; None when the Redis is
    remote or does not answer ``INFO``."""
    if not is_local_redis(url):
        return None
    redis = Redis.from_url(url)
    try:
        cpu = await redis.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
    except (RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        await redis.aclose()


@dataclass(slots=True)
class _Bench:
    options: IngressOptions
    scratch: ScratchSpace
    processes: ProcessSet
    work_dir: Path
    database_url: str
    peer_python: Path | None
    node_peer: NodePeer | None
    placement: CpuPlacement
    next_body: int = 0
    best_rps: dict[str, float] = field(default_factory=dict)

    async def start_server(self, name: str, argv: Sequence[str],
                           env: Mapping[str, str]) -> Service:
        """A server under test, on the core ``placement`` keeps for servers."""
        return await self.processes.start(name, argv, env,
                                          preexec_fn=self.placement.server_preexec())

    def bodies_file(self, name: str, count: int) -> Path:
        path = self.work_dir / f"{name}.bodies"
        write_bodies_file(
            path,
            signed_bodies(self.scratch.tag, self.next_body, count, senders=self.options.senders),
        )
        self.next_body += count
        return path

    async def start(self, target: str, port: int) -> tuple[Service, str]:
        """Start ``target`` on ``port``; returns it and the Redis key its work lands in."""
        redis_url = self.options.redis_url
        if target == INGRESS:
            prefix = self.scratch.key_prefix("in")
            env = clean_env(
                {
                    "DATABASE_URL": self.database_url,
                    "REDIS_URL": redis_url,
                    "MECOVE_PORT": str(port),
                    "MECOVE_KEY_PREFIX": prefix,
                    "WHATSAPP_APP_SECRET": APP_SECRET,
                }
            )
            service = await self.start_server(
                "ingress", mecove_command("api", "--host", "127.0.0.1"), env
            )
            return service, Keys(prefix, 1).stream(0)
        if target == BARE:
            argv = bare_litestar_command(port)
            return await self.start_server("bare", argv, clean_env({})), ""
        if target == RAW:
            return await self.start_server("raw", raw_asgi_command(port), clean_env({})), ""
        if target in NODE_SCRIPTS:
            return await self.start_node(target, port)
        assert self.peer_python is not None
        # The Python peer runs stock uvicorn (in its own environment, without our package):
        # what another team would write; bare Litestar and raw ASGI get ours too.
        peer_options = {k: v for k, v in UVICORN_OPTIONS.items() if k != "http"}
        options = msgspec.json.encode(peer_options).decode()
        queue = self.scratch.key_prefix("arq")
        self.scratch.delete_later(f"arq:job:wamid.HBgM{self.scratch.tag}*")
        self.scratch.delete_later(f"arq:result:wamid.HBgM{self.scratch.tag}*")
        argv = [
            str(self.peer_python),
            str(PEER_SCRIPT),
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--queue",
            f"{queue}:queue",
            "--app-secret",
            APP_SECRET,
            "--uvicorn-options",
            options,
        ]
        return await self.start_server("peer", argv, clean_env({})), f"{queue}:queue"

    async def start_node(self, target: str, port: int) -> tuple[Service, str]:
        """A Node peer, one process; its BullMQ keys live under a scratch prefix."""
        assert self.node_peer is not None
        prefix = self.scratch.key_prefix("bull")  # deleted with the scratch space
        argv = [
            self.node_peer.node,
            str(NODE_PEER_DIR / NODE_SCRIPTS[target]),
            "--port",
            str(port),
            "--redis-url",
            self.options.redis_url,
            "--prefix",
            prefix,
            "--queue",
            BULLMQ_QUEUE,
            "--app-secret",
            APP_SECRET,
        ]
        env = clean_env({"NODE_PATH": str(self.node_peer.modules), "NODE_ENV": "production"})
        service = await self.start_server(target.split("+")[0].lower(), argv, env)
        return service, f"{prefix}:{BULLMQ_QUEUE}:wait"

    async def measure(self, target: str, round_: int, *, profile: Path | None = None) -> Run:
        port = free_port()
        service, work_key = await self.start(target, port)
        try:
            await wait_for_http(service, f"http://127.0.0.1:{port}/health")
            url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
            guess = self.best_rps.get(target, FIRST_GUESS_RPS)
            warmup_file = await asyncio.to_thread(
                self.bodies_file, "warmup", math.ceil(guess * self.options.warmup_seconds * 1.2)
            )
            warmup = await run_load(
                url,
                warmup_file,
                seconds=self.options.warmup_seconds,
                connections=self.options.connections,
            )
            service.ensure_running()
            # Twice the warm-up rate: a warm-up runs cold (Node's JIT) and a quieter machine
            # runs faster than the best so far; bodies that run out repeat, which BullMQ's
            # jobId dedupe answers with less work (a flattering CPU per request).
            expected = max(guess, 2 * warmup.requests_per_s)
            measured_file = await asyncio.to_thread(
                self.bodies_file,
                "measured",
                math.ceil(expected * self.options.seconds * 1.5) + self.options.connections,
            )
            before = await self.landed(work_key)
            spy = (
                await start_py_spy(self.processes, service, profile, self.options.seconds)
                if profile
                else None
            )
            cpu_before = cpu_seconds(service.pid) or 0.0
            redis_before = await redis_cpu_seconds(self.options.redis_url)
            load = await run_load(
                url,
                measured_file,
                seconds=self.options.seconds,
                connections=self.options.connections,
            )
            cpu = (cpu_seconds(service.pid) or 0.0) - cpu_before
            redis_after = await redis_cpu_seconds(self.options.redis_url)
            redis_cpu = (None if redis_before is None or redis_after is None
                         else redis_after - redis_before)
            if spy is not None:
                await spy.process.wait()
            service.ensure_running()
            after = await self.landed(work_key)
            check = f"+{after - before} in Redis" if work_key else ""
            self.best_rps[target] = max(self.best_rps.get(target, 0.0), load.requests_per_s)
            return Run(target, round_, load, cpu, check, redis_cpu)
        finally:
            await self.processes.stop(service)

    async def landed(self, key: str) -> int:
        """Entries in the stream (ingress) or jobs in the queue (peers: zset or list)."""
        if not key:
            return 0
        redis = Redis.from_url(self.options.redis_url)
        try:
            raw_kind: bytes | str = await redis.type(key)
            kind = as_text(raw_kind)
            if kind == "stream":
                return int(await redis.xlen(key))
            if kind == "zset":
                return int(await redis.zcard(key))
            if kind == "list":
                return int(await redis.llen(key))
            return 0
        finally:
            await redis.aclose()


def best_runs(runs: Sequence[Run]) -> dict[str, Run]:
    """The run of each target with the most requests per second."""
    best: dict[str, Run] = {}
    for run in runs:
        current = best.get(run.target)
        if current is None or run.load.requests_per_s > current.load.requests_per_s:
            best[run.target] = run
    return best


RUN_HEADER = (
    f"{'target':<14} {'round':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'CPU us/req':>10} {'non-2xx':>8} {'sock err':>8} {'repeats':>8}  landed"
)


def run_row(run: Run) -> str:
    load = run.load
    return (
        f"{run.target:<14} {run.round:>5} {load.requests_per_s:>9,.0f} "
        f"{load.p50_ms:>8.2f} {load.p99_ms:>8.2f} {run.cpu_us_per_request:>10,.0f} "
        f"{load.non2xx:>8} {load.socket_errors:>8} {load.wrapped:>8}  {run.check}"
    )


def same_round(runs: Sequence[Run], target: str, round_: int) -> Run | None:
    return next((r for r in runs if r.target == target and r.round == round_), None)


# Each peer, the budget of ingress req/s against it (SPEC §11), and its figure's name.
PEER_FIGURES: tuple[tuple[str, float, str], ...] = (
    (PEER, 2.0, f"ingress req/s vs {PEER}"),
    (FASTIFY, 1.0, f"ingress req/s vs {FASTIFY} (Node, per core)"),
    (EXPRESS, 1.0, f"ingress req/s vs {EXPRESS} (Node, per core)"),
)


def figures_from(runs: Sequence[Run], peer_notes: Mapping[str, str]) -> list[Figure]:
    """Ratios pair runs of the same round (same machine conditions): the round of the best
    ingress run, with that round's baselines. ``peer_notes`` says why a peer was not run."""
    ingress = best_runs(runs).get(INGRESS)
    bare = same_round(runs, BARE, ingress.round) if ingress else None
    peers = {
        name: same_round(runs, name, ingress.round) if ingress else None
        for name, _, _ in PEER_FIGURES
    }
    value = ingress.load.requests_per_s if ingress else None
    figures = [
        Figure(
            "ingress req/s vs bare Litestar",
            value,
            "req/s",
            bare.load.requests_per_s if bare else None,
            "bare",
            Target(Check.RATIO_AT_LEAST, 0.75),
        ),
    ]
    for name, budget, title in PEER_FIGURES:
        peer = peers[name]
        figures.append(
            Figure(
                title,
                value if peer else None,
                "req/s",
                peer.load.requests_per_s if peer else None,
                name,
                Target(Check.RATIO_AT_LEAST, budget),
                note="" if peer else peer_notes.get(name, "not measured: no ingress run"),
            )
        )
    figures += _raw_asgi_figures(runs, ingress)
    ingress_runs = [r for r in runs if r.target == INGRESS]
    failures = sum(r.load.non2xx + r.load.socket_errors for r in ingress_runs)
    figures.append(
        Figure(
            "ingress non-2xx + socket errors (all runs)",
            float(failures) if ingress_runs else None,
            "",
            target=Target(Check.EQUALS, 0),
        )
    )
    if ingress:
        figures += [
            Figure(
                "ingress p50 latency (same run)",
                ingress.load.p50_ms,
                "ms",
                bare.load.p50_ms if bare else None,
                "bare",
            ),
            Figure(
                "ingress p99 latency (same run)",
                ingress.load.p99_ms,
                "ms",
                bare.load.p99_ms if bare else None,
                "bare",
            ),
        ]
    for name, peer in peers.items():
        if peer:
            figures.append(Figure(f"{name} p99 latency (same run)", peer.load.p99_ms, "ms"))
    peer_failures = sum(r.load.non2xx + r.load.socket_errors for r in runs if r.target in peers)
    if any(peers.values()):
        # A peer answering errors would be measured doing less work: say so in the table.
        figures.append(
            Figure("peers non-2xx + socket errors (all runs, info)", float(peer_failures), "")
        )
    cpu = {
        target: min(r.cpu_us_per_request for r in runs if r.target == target)
        for target in {r.target for r in runs}
    }
    if INGRESS in cpu:
        # CPU per request barely moves when other work shares the machine: the steadier ratio.
        if BARE in cpu:
            figures.append(
                Figure(
                    f"ingress CPU per request vs {BARE}",
                    cpu[INGRESS],
                    "us",
                    cpu[BARE],
                    BARE,
                    Target(Check.RATIO_AT_MOST, 1.4),
                )
            )
        for name, _, _ in PEER_FIGURES:
            if name in cpu:
                figures.append(
                    Figure(
                        f"ingress CPU per request vs {name} (info)",
                        cpu[INGRESS],
                        "us",
                        cpu[name],
                        name,
                    )
                )
    figures += _redis_cpu_figures(runs)
    return figures


def _redis_cpu_figures(runs: Sequence[Run]) -> list[Figure]:
    """Info: Redis CPU per request of the ingress against Fastify+BullMQ's, each the lowest of
    its target's runs; "not measured" when no run of the target has it."""
    if not any(r.target == INGRESS for r in runs):
        return []
    lowest: dict[str, float | None] = {}
    for target in (INGRESS, FASTIFY):
        measured = [v for r in runs if r.target == target
                    and (v := r.redis_cpu_us_per_request) is not None]
        lowest[target] = min(measured) if measured else None
    note = "" if lowest[INGRESS] is not None else (
        "not measured: Redis not local, or no INFO cpu")
    return [Figure(f"ingress Redis CPU per request vs {FASTIFY} (info)", lowest[INGRESS], "us",
                   lowest[FASTIFY], FASTIFY, note=note)]


def _raw_asgi_figures(runs: Sequence[Run], ingress: Run | None) -> list[Figure]:
    """Info: the server's own floor (raw ASGI under the same uvicorn) against Fastify+BullMQ,
    and what the ingress costs above that floor. Req/s from the round of the best ingress run
    (else the best raw run); CPU per request the lowest of each target's runs."""
    raw_runs = [r for r in runs if r.target == RAW]
    if not raw_runs:
        return []
    round_ = ingress.round if ingress else best_runs(raw_runs)[RAW].round
    raw, fastify = same_round(runs, RAW, round_), same_round(runs, FASTIFY, round_)
    cpu_raw = min(r.cpu_us_per_request for r in raw_runs)
    figures = []
    if raw and fastify:
        figures.append(
            Figure(
                f"{RAW} req/s vs {FASTIFY} (per core, info)",
                raw.load.requests_per_s,
                "req/s",
                fastify.load.requests_per_s,
                FASTIFY,
            )
        )
    fastify_cpu = [r.cpu_us_per_request for r in runs if r.target == FASTIFY]
    if fastify_cpu:
        figures.append(
            Figure(
                f"{RAW} CPU per request vs {FASTIFY} (info)",
                cpu_raw,
                "us",
                min(fastify_cpu),
                FASTIFY,
            )
        )
    for target in (BARE, INGRESS):
        cpu = [r.cpu_us_per_request for r in runs if r.target == target]
        if cpu:
            figures.append(
                Figure(f"{target} CPU per request vs {RAW} (info)", min(cpu), "us", cpu_raw, RAW)
            )
    return figures


async def available_peers(
    options: IngressOptions,
) -> tuple[Path | None, NodePeer | None, dict[str, str]]:
    """Build (or find cached) the peers' environments; a peer that cannot run gets a note,
    printed now with the full reason, and shown as "not measured: <why>" in the table."""
    if not options.peer:
        return None, None, {name: "not measured: --no-peer" for name, _, _ in PEER_FIGURES}
    notes = {
        name: "not measured: not in --targets"
        for name, _, _ in PEER_FIGURES
        if name not in options.targets
    }
    if not options.express:
        notes.setdefault(EXPRESS, "not measured: skipped at this size")
    peer_python: Path | None = None
    node_peer: NodePeer | None = None
    try:
        if PEER not in notes:
            peer_python = await ensure_peer_python()
    except PeerUnavailable as exc:
        notes[PEER] = f"not measured: {str(exc).splitlines()[0]}"
        print(f"{PEER}: not measured: {exc}")
    try:
        if FASTIFY not in notes or EXPRESS not in notes:
            node_peer = await ensure_node_peer()
    except PeerUnavailable as exc:
        reason = f"not measured: {str(exc).splitlines()[0]}"
        notes[FASTIFY] = reason
        notes.setdefault(EXPRESS, reason)
        print(f"{FASTIFY}, {EXPRESS}: not measured: {exc}")
    return peer_python, node_peer, notes


async def run_ingress_bench(options: IngressOptions) -> list[Figure]:
    """Measure every target ``rounds`` times, interleaved; print runs; return the figures."""
    print(
        f"== ingress: {options.seconds:g}s per run after {options.warmup_seconds:g}s warm-up, "
        f"{options.connections} connections, {options.rounds} round(s)"
    )
    print(f"load generator: {load_generator_name()}")
    placement = CpuPlacement(options.pin)
    peer_python, node_peer, peer_notes = await available_peers(options)
    available = {RAW, BARE, INGRESS} | ({PEER} if peer_python else set())
    if node_peer is not None:
        available |= {FASTIFY} | ({EXPRESS} if options.express else set())
    targets = [t for t in TARGET_NAMES.values() if t in available and t in options.targets]
    runs: list[Run] = []
    with work_directory("ingress") as work_dir:
        async with ScratchSpace(options.admin_database_url, options.redis_url, "in") as scratch:
            async with ProcessSet(work_dir / "logs") as processes:
                bench = _Bench(
                    options,
                    scratch,
                    processes,
                    work_dir,
                    await scratch.fresh_database("ingress"),
                    peer_python,
                    node_peer,
                    placement,
                )
                placement.start(await local_redis_pid(options.redis_url))
                try:
                    print(f"cores: {placement.describe()}")
                    print(RUN_HEADER)
                    for round_ in range(1, options.rounds + 1):
                        for target in targets:
                            run = await bench.measure(target, round_)
                            runs.append(run)
                            print(run_row(run), flush=True)
                    if options.py_spy is not None and INGRESS in targets:
                        print(f"profiling one more ingress run with py-spy -> {options.py_spy}")
                        await bench.measure(INGRESS, 0, profile=options.py_spy.resolve())
                finally:
                    placement.restore()
    return figures_from(runs, peer_notes)


async def local_redis_pid(redis_url: str) -> int | None:
    """The pid of the Redis at ``redis_url`` when it runs on this machine (``INFO server``'s
    ``process_id``), else None: remote, or not answering ``INFO``."""
    if not is_local_redis(redis_url):
        return None
    redis = Redis.from_url(redis_url)
    try:
        pid = (await redis.info("server")).get("process_id")
    except (RedisError, OSError):
        return None
    finally:
        await redis.aclose()
    return pid if isinstance(pid, int) else None


def add_no_peer_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-peer`` (``args.peer`` False), shared with ``python -m bench``."""
    parser.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="skip every peer: FastAPI+arq, Fastify+BullMQ, Express+BullMQ "
        "(no virtualenv is built, npm is not run)",
    )


def add_arguments(parser: argparse.ArgumentParser, smoke: bool = False) -> None:
    defaults = smoke_ingress_options() if smoke else IngressOptions()
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--warmup-seconds", type=float, default=defaults.warmup_seconds)
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--senders", type=int, default=defaults.senders)
    add_no_peer_argument(parser)
    parser.add_argument(
        "--no-express",
        dest="express",
        action="store_false",
        default=defaults.express,
        help="skip the Express+BullMQ peer (Fastify+BullMQ still runs)",
    )
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=tuple(TARGET_NAMES),
        default=list(TARGET_NAMES),
        help="the targets to run (default: all; a peer that cannot be built is skipped)",
    )
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="let the scheduler place the servers, wrk and Redis (default: each server on a "
        "core of its own, wrk and a local Redis on the others; bench/cpu_placement.py)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        default=None,
        help="profile an extra ingress run (.svg flamegraph, .json speedscope, "
        "else raw collapsed stacks)",
    )


def smoke_ingress_options() -> IngressOptions:
    # Smoke runs FastAPI+arq and Fastify+BullMQ (a few seconds each), not Express: one Node
    # peer is enough to keep the Node scripts working.
    return IngressOptions(seconds=1.0, warmup_seconds=0.5, connections=8, rounds=1, express=False)


def options_from(args: argparse.Namespace, admin_url: str, redis_url: str) -> IngressOptions:
    return IngressOptions(
        seconds=args.seconds,
        warmup_seconds=args.warmup_seconds,
        connections=args.connections,
        rounds=args.rounds,
        senders=args.senders,
        peer=args.peer,
        express=args.express,
        py_spy=args.py_spy,
        targets=tuple(TARGET_NAMES[name] for name in args.targets),
        admin_database_url=admin_url,
        redis_url=redis_url,
        pin=args.pin,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("ingress", __doc__, argv, add_arguments, options_from, run_ingress_bench)


if __name__ == "__main__":
    raise SystemExit(main())
