"""End to end: webhook → log → replier → Graph API, with zero-latency fakes of Graph and Groq.

**Latency** — signed webhooks at a fixed rate (default 200/s for 30 s, after a warm-up at the
same rate) into ``mecove api``, with one projector and ``--latency-repliers`` replier processes
(default 2, as issue 15 specifies) running. Every message has its own sender, so the fake
Graph API's record of each send (``to``, ``received_at``) pairs with the moment its webhook
was posted. The sender is open-loop: a slow answer never delays the next webhook.

**Throughput** — 1, 2 and 4 replier processes (distinct ``MECOVE_CONSUMER_NAME``), started
and idle; a backlog of ``--backlog`` messages is appended to the log (as the ingress would,
one Lua step per batch) and the clock runs until the fake has the last send.

The fakes are the test suite's (``tests/fakes``), each in its own process so its threads do
not share a GIL with the load; they answer with TCP_NODELAY and a deep listen backlog
(``app.devtools.local_http_server``), as a real API would.

**Typing indicator** — on by default, as in production: each reply then costs two Graph calls
(the read mark with "typing…", concurrent with the LLM call, then the send);
``--typing-indicator off`` measures without it. The number's throughput limiter is lifted
(``MECOVE_GRAPH_MAX_MPS``): the fake is not Meta, and the bench measures MeCove.

``python -m bench.e2e --rate 200 --seconds 30 [--typing-indicator off]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.entries import TYPE, as_text
from app.platform.eventlog.keys import Keys
from bench.e2e_stages import FakeRecord, stage_table, tail_table, times_by_sender
from bench.figures import Check, Figure, Target, percentile
from bench.numbered_messages import (
    APP_SECRET,
    PHONE_NUMBER_ID,
    WEBHOOK_PATH,
    SignedBody,
    received_events,
    signed_bodies,
)
from bench.processes import (
    BenchError,
    ProcessSet,
    Service,
    clean_env,
    cpu_seconds,
    machine_cpu_seconds,
    mecove_command,
    read_listening_line,
    rss_mb,
    start_py_spy,
    wait_for_http,
    work_directory,
)
from bench.raw_http import HttpError, RawHttpClient
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, ScratchSpace
from bench.standalone import run_standalone

GRAPH_TOKEN = "bench-graph-token"
GROQ_KEY = "bench-groq-key"
STARTED_LINE = "consumer started"  # logged by the consumer runtime as it starts reading
REPLY_SENT = b"ReplySent"  # the type field of a ReplySent entry
APPEND_CHUNK = 100  # messages per Lua step when appending a backlog


@dataclass(frozen=True, slots=True)
class E2eOptions:
    rate: float = 200.0
    seconds: float = 30.0
    warmup_seconds: float = 3.0
    latency_repliers: int = 2  # issue 15: api + projector + 2 repliers
    backlog: int = 2_000
    replier_counts: tuple[int, ...] = (1, 2, 4)
    rounds: int = 2
    typing_indicator: bool = True
    stall_timeout_s: float = 60.0  # a drain that makes no progress this long fails
    py_spy: Path | None = None  # profile the replier of the first 1-process throughput run
    py_spy_latency: Path | None = None  # profile replier 1 during the first latency run
    admin_database_url: str = DEFAULT_ADMIN_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    projector_linger_ms: int | None = None  # MECOVE_PROJECTOR_LINGER_MS; None: the default


@dataclass(frozen=True, slots=True)
class Posted:
    to: str  # the sender, as the reply's ``to`` (E.164 with +)
    wamid: str
    at: float  # wall clock just before the request went out
    status: int  # 0 when the request failed
    response_s: float


@dataclass(frozen=True, slots=True)
class LatencyRun:
    round: int
    posted: int
    achieved_rate: float
    non2xx: int
    statuses: dict[int, int]  # answers by HTTP status (0: the request failed)
    latencies_ms: list[float]  # sorted; one per delivered measured message
    response_p99_ms: float
    rss_max_mb: dict[str, float]
    cpu_ms_per_message: dict[str, float]  # CPU of each process over the measured webhooks
    stages: str  # the stage table (``bench.e2e_stages``)
    projector_batches: tuple[int, int]  # batches and events projector-1 handled meanwhile
    replier_batches: tuple[int, int]  # batches and entries all repliers handled meanwhile
    window: tuple[float, float]  # wall clock from the first measured webhook to the last send

    @property
    def missing(self) -> int:
        """Webhooks accepted (2xx) whose reply never reached the Graph API."""
        return self.posted - self.non2xx - len(self.latencies_ms)

    def p(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)


@dataclass(frozen=True, slots=True)
class ThroughputRun:
    round: int
    processes: int
    messages: int
    seconds: float
    cpu_s: float  # CPU time of all replier processes during the run
    fakes_cpu_s: float  # CPU time of the fake Graph and Groq APIs during the run
    machine_busy: float  # share of all the machine's cores busy during the run (anyone's)

    @property
    def cpu_ms_per_reply(self) -> float:
        return self.cpu_s / self.messages * 1000 if self.messages else 0.0

    @property
    def per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


class _Record(msgspec.Struct):
    body: dict[str, object] | None
    received_at: float
    status: int | None = None


@dataclass(slots=True)
class _Bench:
    options: E2eOptions
    scratch: ScratchSpace
    processes: ProcessSet
    graph_url: str
    groq_url: str
    next_message: int = 0
    rss: dict[str, float] = field(default_factory=dict)
    fakes: list[Service] = field(default_factory=list)  # their CPU is part of a latency run

    def mecove_env(self, database_url: str, prefix: str, **extra: str) -> dict[str, str]:
        return clean_env({
            "DATABASE_URL": database_url,
            "REDIS_URL": self.options.redis_url,
            "MECOVE_KEY_PREFIX": prefix,
            "WHATSAPP_APP_SECRET": APP_SECRET,
            "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
            "WHATSAPP_PERMANENT_TOKEN": GRAPH_TOKEN,
            "WHATSAPP_API_BASE_URL": self.graph_url,
            "GROQ_API_KEY": GROQ_KEY,
            "GROQ_BASE_URL": self.groq_url,
            "MECOVE_TYPING_INDICATOR": "true" if self.options.typing_indicator else "false",
            "MECOVE_GRAPH_MAX_MPS": "1000000",
            **extra,
        })

    def take_bodies(self, count: int) -> list[SignedBody]:
        """Bodies with senders never used before in this run (one sender per message)."""
        bodies = list(signed_bodies(self.scratch.tag, self.next_message, count))
        self.next_message += count
        return bodies

    async def start_consumers(
        self, database_url: str, prefix: str, group: str, count: int,
        metrics_ports: Sequence[int] = (), **extra: str
    ) -> list[Service]:
        """``count`` consumers of ``group``; consumer i serves /metrics on ``metrics_ports[i]``
        when given."""
        services = []
        for index in range(count):
            name = f"{group}-{index + 1}"
            if index < len(metrics_ports):
                extra = {**extra, "MECOVE_METRICS_PORT": str(metrics_ports[index])}
            env = self.mecove_env(database_url, prefix,
                                  MECOVE_CONSUMER_NAME=f"bench-{name}-{prefix}", **extra)
            services.append(await self.processes.start(name, mecove_command("consume", group),
                                                       env))
        return services

    async def wait_for_consumers(
        self, redis: Redis, stream: str, wanted: dict[str, int], services: Sequence[Service]
    ) -> None:
        """Until every consumer process is reading.

        Redis 7.2+ lists a consumer as soon as it blocks on XREADGROUP; 7.0 only once it has
        read something, so there the "consumer started" log line of each process counts.
        """
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for service in services:
                service.ensure_running()
            if all(STARTED_LINE in s.log_path.read_text(errors="replace") for s in services):
                await asyncio.sleep(0.3)  # from the log line to the first blocking read
                return
            if await redis.exists(stream):
                groups = {g["name"].decode(): int(g["consumers"])
                          for g in await redis.xinfo_groups(stream)}
                if all(groups.get(g, 0) >= n for g, n in wanted.items()):
                    return
            await asyncio.sleep(0.05)
        raise BenchError(f"consumers {wanted} did not start reading {stream} within 60s")

    async def fake_records(self) -> list[_Record]:
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.get(f"{self.graph_url}/_fake/requests")
            response.raise_for_status()
        return msgspec.json.decode(response.content, type=list[_Record])

    async def llm_records(self) -> list[FakeRecord]:
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.get(f"{self.groq_url}/_fake/records")
            response.raise_for_status()
        return msgspec.json.decode(response.content, type=list[FakeRecord])

    async def forget_llm_requests(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            (await client.post(f"{self.groq_url}/_fake/forget")).raise_for_status()

    async def forget_sends(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            (await client.post(f"{self.graph_url}/_fake/forget")).raise_for_status()

    async def sample_rss(self, services: Sequence[Service], stop: asyncio.Event) -> None:
        while not stop.is_set():
            for service in services:
                value = rss_mb(service.pid)
                if value is not None:
                    self.rss[service.name] = max(self.rss.get(service.name, 0.0), value)
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass


async def wait_for_replies(
    redis: Redis, stream: str, count: int, stall_s: float, services: Sequence[Service]
) -> None:
    """Each reply appends ReplySent after its send: ``count`` of them say all were sent (the
    stream also holds the messages and the users' content keys, so its length does not).

    A slow drain is a result, not an error: give up only when nothing moves for ``stall_s``.
    """
    have, after = 0, "-"
    moved = time.monotonic()
    while have < count:
        for service in services:
            service.ensure_running()
        entries = await redis.xrange(stream, min=after, max="+", count=5_000)
        if after != "-" and entries:
            entries = entries[1:]  # ``after`` itself was counted by the previous read
        if entries:
            after = as_text(entries[-1][0])
            have += sum(1 for _id, fields in entries if fields.get(TYPE) == REPLY_SENT)
            moved = time.monotonic()
            continue
        if time.monotonic() - moved > stall_s:
            raise BenchError(f"{stream} has {have} ReplySent for {stall_s:g}s, expected "
                             f"{count}: replies are missing")
        await asyncio.sleep(0.05)


@contextmanager
def no_full_collections() -> Iterator[None]:
    """No automatic full garbage collection in the load generator while it posts and waits:
    its bodies, tasks and answers made each one a 50+ ms stop (CPU) in the measured window,
    after which the webhooks it had held went out as a burst. One runs after."""
    young, middle, full = gc.get_threshold()
    gc.set_threshold(young, middle, 2**31 - 1)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, full)
        gc.collect()


async def post_at_rate(url: str, bodies: Sequence[SignedBody], rate: float) -> list[Posted]:
    """Open loop: body i goes out at start + i / rate, whatever earlier answers are doing."""
    parts = urlsplit(url)
    async with RawHttpClient(parts.hostname or "127.0.0.1", parts.port or 80) as client:
        async def post(item: SignedBody) -> Posted:
            sent_at = time.time()
            started = time.perf_counter()
            try:
                status = await client.post(parts.path, item.body, {
                    "Content-Type": "application/json",
                    "X-Hub-Signature-256": item.signature})
            except (OSError, HttpError):
                status = 0
            return Posted("+" + item.sender, item.wamid, sent_at, status,
                          time.perf_counter() - started)

        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks: list[asyncio.Task[Posted]] = []
        for index, item in enumerate(bodies):
            delay = start + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(item)))
        return list(await asyncio.gather(*tasks))


async def measure_latency(bench: _Bench, round_: int) -> LatencyRun:
    options = bench.options
    database_url = await bench.scratch.fresh_database("e2e")
    prefix = bench.scratch.key_prefix("lat")
    stream = Keys(prefix, 1).stream(0)
    port = free_port()
    redis = Redis.from_url(options.redis_url)
    services: list[Service] = []
    stop_sampling = asyncio.Event()
    try:
        api = await bench.processes.start(
            "api", mecove_command("api", "--host", "127.0.0.1"),
            bench.mecove_env(database_url, prefix, MECOVE_PORT=str(port)))
        services.append(api)
        metrics_port = free_port()
        replier_ports = [free_port() for _ in range(options.latency_repliers)]
        linger = ({} if options.projector_linger_ms is None
                  else {"MECOVE_PROJECTOR_LINGER_MS": str(options.projector_linger_ms)})
        services += await bench.start_consumers(database_url, prefix, "projector", 1,
                                                [metrics_port], **linger)
        services += await bench.start_consumers(database_url, prefix, "replier",
                                                options.latency_repliers, replier_ports)
        await wait_for_http(api, f"http://127.0.0.1:{port}/health")
        await bench.wait_for_consumers(
            redis, stream, {"projector": 1, "replier": options.latency_repliers}, services[1:])
        await bench.forget_sends()
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        warmup = bench.take_bodies(round(options.rate * options.warmup_seconds))
        measured = bench.take_bodies(round(options.rate * options.seconds))
        gc.collect()  # the bodies just built, before the generator stops full collections
        with no_full_collections():
            warm_posted = await post_at_rate(url, warmup, options.rate)
            warm_accepted = sum(200 <= p.status < 300 for p in warm_posted)
            await wait_for_replies(redis, stream, warm_accepted, options.stall_timeout_s,
                                   services)  # measure from an idle, warmed-up pipeline
            await bench.forget_llm_requests()
            bench.rss = {}
            sampler = asyncio.create_task(bench.sample_rss(services, stop_sampling))
            profile = options.py_spy_latency.resolve() \
                if options.py_spy_latency and round_ == 1 else None
            replier = next(s for s in services if s.name.startswith("replier"))
            spy = await start_py_spy(bench.processes, replier, profile) if profile else None
            batches_before = await handled_batches(metrics_port, "projector")
            replier_before = [await handled_batches(p, "replier") for p in replier_ports]
            cpu_before = {s.name: cpu_seconds(s.pid) or 0.0 for s in [*services, *bench.fakes]}
            started = time.perf_counter()
            posted = await post_at_rate(url, measured, options.rate)
            sending_s = time.perf_counter() - started
            accepted = sum(200 <= p.status < 300 for p in [*warm_posted, *posted])
            await wait_for_replies(redis, stream, accepted, options.stall_timeout_s,
                                   services)
        if spy is not None:
            await bench.processes.stop(spy, sig=signal.SIGINT)
        cpu_ms = {s.name: ((cpu_seconds(s.pid) or 0.0) - cpu_before[s.name]) * 1000
                  / max(len(posted), 1) for s in [*services, *bench.fakes]}
        batches_after = await handled_batches(metrics_port, "projector")
        replier_after = [await handled_batches(p, "replier") for p in replier_ports]
        stop_sampling.set()
        await sampler
        records = await bench.fake_records()
        llm_records = await bench.llm_records()
        entries = await redis.xrange(stream, min="-", max="+")
    finally:
        stop_sampling.set()
        for service in services:
            await bench.processes.stop(service)
        await redis.aclose()
        await bench.scratch.drop_database(database_url)
    first_send: dict[str, float] = {}
    for record in records:
        to = record.body.get("to") if record.body else None
        if record.status == 200 and isinstance(to, str):
            first_send.setdefault(to, record.received_at)
    latencies = sorted((first_send[p.to] - p.at) * 1000 for p in posted if p.to in first_send)
    responses = sorted(p.response_s * 1000 for p in posted)
    graph_records = [FakeRecord(r.body, r.received_at, r.status) for r in records]
    sends = [r.received_at for r in records if r.status == 200]
    window = (min((p.at for p in posted), default=0.0), max(sends, default=0.0))
    times = times_by_sender(
        ((p.to, p.wamid, p.at, p.at + p.response_s) for p in posted if p.status == 200),
        entries, graph_records, llm_records).values()
    stages = stage_table(times) + "\n" + tail_table(times)
    return LatencyRun(
        round=round_,
        posted=len(posted),
        achieved_rate=len(posted) / sending_s if sending_s > 0 else 0.0,
        non2xx=sum(not 200 <= p.status < 300 for p in posted),
        statuses=dict(Counter(p.status for p in posted)),
        latencies_ms=latencies,
        response_p99_ms=percentile(responses, 0.99),
        rss_max_mb=dict(bench.rss),
        cpu_ms_per_message=cpu_ms,
        stages=stages,
        projector_batches=(batches_after[0] - batches_before[0],
                           batches_after[1] - batches_before[1]),
        replier_batches=(sum(a[0] - b[0] for a, b in zip(replier_after, replier_before,
                                                         strict=True)),
                         sum(a[1] - b[1] for a, b in zip(replier_after, replier_before,
                                                         strict=True))),
        window=window,
    )


async def handled_batches(metrics_port: int, group: str) -> tuple[int, int]:
    """The batches a consumer of ``group`` has handled and the entries in them (its
    /metrics; entries of types the group ignores count too)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    counts = {"mecove_handler_seconds_count": 0.0, "mecove_consumer_processed_total": 0.0}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in counts and f'group="{group}"' in rest:
            counts[name] += float(rest.rsplit(" ", 1)[1])
    return (int(counts["mecove_handler_seconds_count"]),
            int(counts["mecove_consumer_processed_total"]))


async def measure_throughput(bench: _Bench, round_: int, count: int,
                             database_url: str, profile: Path | None = None) -> ThroughputRun:
    options = bench.options
    prefix = bench.scratch.key_prefix(f"tp{count}")
    keys = Keys(prefix, 1)
    stream = keys.stream(0)
    redis = Redis.from_url(options.redis_url)
    services: list[Service] = []
    try:
        services = await bench.start_consumers(database_url, prefix, "replier", count)
        await bench.wait_for_consumers(redis, stream, {"replier": count}, services)
        events = await asyncio.to_thread(received_events, bench.scratch.tag,
                                         bench.next_message, options.backlog)
        bench.next_message += options.backlog
        await bench.forget_sends()
        event_log = EventLog(redis, keys)
        spy = await start_py_spy(bench.processes, services[0], profile) if profile else None
        cpu_before = sum(cpu_seconds(s.pid) or 0.0 for s in services)
        fakes_before = sum(cpu_seconds(s.pid) or 0.0 for s in bench.fakes)
        busy_before, total_before = machine_cpu_seconds()
        started = time.time()
        for start in range(0, len(events), APPEND_CHUNK):
            await event_log.append_messages(events[start:start + APPEND_CHUNK])
        await wait_for_replies(redis, stream, len(events), options.stall_timeout_s,
                               services)
        cpu = sum(cpu_seconds(s.pid) or 0.0 for s in services) - cpu_before
        fakes_cpu = sum(cpu_seconds(s.pid) or 0.0 for s in bench.fakes) - fakes_before
        busy_after, total_after = machine_cpu_seconds()
        machine_busy = (busy_after - busy_before) / max(total_after - total_before, 1e-9)
        if spy is not None:
            await bench.processes.stop(spy, sig=signal.SIGINT)
        records = await bench.fake_records()
    finally:
        for service in services:
            await bench.processes.stop(service)
        await redis.aclose()
    wanted = {e.channel_user_key for e in events}
    sends = [r.received_at for r in records
             if r.status == 200 and r.body and r.body.get("to") in wanted]
    if len(sends) < len(events):
        raise BenchError(f"{len(events) - len(sends)} of {len(events)} replies never reached "
                         "the fake Graph API")
    return ThroughputRun(round_, count, len(events), max(sends) - started, cpu, fakes_cpu,
                         machine_busy)


def print_latency(run: LatencyRun) -> None:
    rss = ", ".join(f"{k} {v:.0f}" for k, v in sorted(run.rss_max_mb.items()))
    print(f"round {run.round}: {run.posted} webhooks at {run.achieved_rate:.0f}/s, "
          f"answers by status {run.statuses}, delivered {len(run.latencies_ms)}; webhook->send "
          f"p50 {run.p(0.5):.1f} ms, p99 {run.p(0.99):.1f} ms, max {run.p(1.0):.1f} ms; "
          f"webhook answer p99 {run.response_p99_ms:.1f} ms; max RSS MB: {rss}")
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in sorted(run.cpu_ms_per_message.items()))
    print(f"  CPU ms per webhook, by process: {cpu}")
    batches, events = run.projector_batches
    print(f"  projector-1: {batches} batches, {events} events "
          f"({events / max(batches, 1):.1f} per batch)")
    batches, entries = run.replier_batches
    print(f"  repliers: {batches} batches, {entries} entries ({entries / max(batches, 1):.1f} "
          f"per batch, {entries / max(run.posted, 1):.1f} per webhook)")
    print("  stages (ms):\n    " + run.stages.replace("\n", "\n    "))
    print(f"round {run.round} measured window: {run.window[0]:.3f}-{run.window[1]:.3f} "
          "(wall clock; for bench.gc_stops)")


async def run_e2e_bench(options: E2eOptions) -> list[Figure]:
    print(f"== e2e: {options.rate:g} webhooks/s for {options.seconds:g}s "
          f"(+{options.warmup_seconds:g}s warm-up), {options.latency_repliers} replier(s); "
          f"throughput: backlog {options.backlog} with {options.replier_counts} replier "
          f"processes; {options.rounds} round(s)")
    latency_runs: list[LatencyRun] = []
    throughput_runs: list[ThroughputRun] = []
    with work_directory("e2e") as work_dir:
        async with ScratchSpace(options.admin_database_url, options.redis_url, "ee") as scratch:
            async with ProcessSet(work_dir / "logs") as processes:
                graph = await processes.start(
                    "fake-graph", [sys.executable, "-m", "tests.fakes.graph_api", "--port", "0",
                                   "--expected-token", GRAPH_TOKEN, "--no-full-collections"],
                    clean_env({}), stdout_pipe=True)
                groq = await processes.start(
                    "fake-groq", [sys.executable, "-m", "tests.fakes.groq_api", "--port", "0",
                                  "--reply-text", "Thanks! We'll get back to you shortly.",
                                  "--no-full-collections"],
                    clean_env({}), stdout_pipe=True)
                bench = _Bench(options, scratch, processes, await read_listening_line(graph),
                               await read_listening_line(groq), fakes=[graph, groq])
                for round_ in range(1, options.rounds + 1):
                    run = await measure_latency(bench, round_)
                    latency_runs.append(run)
                    print_latency(run)
                database_url = await scratch.fresh_database("tp")
                for round_ in range(1, options.rounds + 1):
                    for count in options.replier_counts:
                        profile = (options.py_spy.resolve() if options.py_spy and round_ == 1
                                   and count == 1 else None)
                        tp = await measure_throughput(bench, round_, count, database_url,
                                                      profile)
                        throughput_runs.append(tp)
                        print(f"round {round_}: {count} replier process(es): "
                              f"{tp.per_s:,.0f} replies/s ({tp.messages} in {tp.seconds:.2f}s; "
                              f"{tp.cpu_ms_per_reply:.1f} ms replier CPU per reply, "
                              f"{tp.fakes_cpu_s / tp.messages * 1000:.1f} ms fakes' CPU per "
                              f"reply; machine {tp.machine_busy:.0%} busy, all cores)")
    return figures_from(options, latency_runs, throughput_runs)


def figures_from(options: E2eOptions, latency_runs: Sequence[LatencyRun],
                 throughput_runs: Sequence[ThroughputRun]) -> list[Figure]:
    best = min(latency_runs, key=lambda r: r.p(0.99))
    rate = f"{options.rate:g}/s, typing {'on' if options.typing_indicator else 'off'}"
    figures = [
        Figure(f"webhook->send p99 at {rate}", best.p(0.99), "ms",
               target=Target(Check.AT_MOST, 50)),
        Figure(f"webhook->send p50 at {rate}", best.p(0.5), "ms"),
        Figure(f"webhook->send max at {rate}", best.p(1.0), "ms"),
        Figure("e2e webhooks answered non-2xx, or 2xx but never replied (all runs)",
               float(sum(r.non2xx + r.missing for r in latency_runs)), "",
               target=Target(Check.EQUALS, 0)),
    ]
    for name, value in sorted(best.rss_max_mb.items()):
        figures.append(Figure(f"max RSS {name} at {rate}", value, "MB",
                              target=Target(Check.AT_MOST, 100)))
    by_count: dict[int, float] = {}
    for run in throughput_runs:
        by_count[run.processes] = max(by_count.get(run.processes, 0.0), run.per_s)
    previous: tuple[int, float] | None = None
    for count in options.replier_counts:
        if count not in by_count:
            continue
        figures.append(Figure(
            f"replier throughput, {count} process(es), typing "
            f"{'on' if options.typing_indicator else 'off'}", by_count[count], "replies/s",
            previous[1] if previous else None,
            f"{previous[0]} proc" if previous else "",
            Target(Check.RATIO_ABOVE, 1.0) if previous else None))
        previous = (count, by_count[count])
    cpu = [r.cpu_ms_per_reply for r in throughput_runs if r.processes == 1]
    if cpu:
        figures.append(Figure("replier CPU per reply, 1 process", min(cpu), "ms",
                              target=Target(Check.AT_MOST, 3)))
    return figures


def add_arguments(parser: argparse.ArgumentParser, smoke: bool = False) -> None:
    defaults = smoke_e2e_options() if smoke else E2eOptions()
    parser.add_argument("--rate", type=float, default=defaults.rate, help="webhooks per second")
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--warmup-seconds", type=float, default=defaults.warmup_seconds)
    parser.add_argument("--latency-repliers", type=int, default=defaults.latency_repliers)
    parser.add_argument("--backlog", type=int, default=defaults.backlog)
    parser.add_argument("--replier-counts", type=int, nargs="*",
                        default=list(defaults.replier_counts))
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--typing-indicator", choices=("on", "off"), default="on",
                        help="show \"typing…\" before each reply (a second Graph call)")
    parser.add_argument("--py-spy-latency", type=Path, default=None,
                        help="profile replier-1 during the first latency run (py-spy record: "
                             ".svg, .json, else raw collapsed stacks)")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="profile the replier of the first 1-process throughput run "
                             "(.svg flamegraph, .json speedscope, else raw collapsed stacks)")
    parser.add_argument("--projector-linger-ms", type=int, default=None,
                        help="MECOVE_PROJECTOR_LINGER_MS for the projector (default: its own)")


def smoke_e2e_options() -> E2eOptions:
    return E2eOptions(rate=50, seconds=1, warmup_seconds=0.5, backlog=50,
                      replier_counts=(1, 2), rounds=1)


def options_from(args: argparse.Namespace, admin_url: str, redis_url: str) -> E2eOptions:
    return E2eOptions(
        rate=args.rate, seconds=args.seconds, warmup_seconds=args.warmup_seconds,
        latency_repliers=args.latency_repliers, backlog=args.backlog,
        replier_counts=tuple(args.replier_counts), rounds=args.rounds,
        typing_indicator=args.typing_indicator == "on", py_spy=args.py_spy,
        py_spy_latency=args.py_spy_latency, projector_linger_ms=args.projector_linger_ms,
        admin_database_url=admin_url, redis_url=redis_url,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_standalone("e2e", __doc__, argv, add_arguments, options_from, run_e2e_bench)


if __name__ == "__main__":
    raise SystemExit(main())
