"""``mecove simulate``: signed webhook traffic at the service, the conversation printed live.

A run: start the simulated Graph API (``app.devtools.simulated_graph_api``); unless ``--url``
names a running ingress, start the service itself — embedded PostgreSQL and Redis in
``--data-dir`` (a temporary folder by default) for whichever of ``DATABASE_URL`` /
``REDIS_URL`` is not set, then ``mecove dev`` with ``WHATSAPP_API_BASE_URL`` pointing at the
simulated API and dummy WhatsApp credentials, so that replies really go through the Graph
client; wait until it is ready (the ingress answers ``/ready`` and a replier reads the log);
post the planned deliveries, signed with ``WHATSAPP_APP_SECRET`` (a random one for a service
we start); print each user message as it is posted and each reply as the simulated API
receives it, marked contextual or standalone with the milliseconds since its message; wait for
the last replies; stop everything; print a summary. ``GROQ_API_KEY`` is withheld from the
service (replies are ``Noted.``) unless ``--use-llm``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from app.devtools.dev_command import DATABASE_NAME, ensure_database
from app.devtools.embedded.embedded_servers import EmbeddedServers
from app.devtools.embedded.server_process import ServerStartError
from app.devtools.ports import free_port
from app.devtools.simulate.simulate_options import SimulateOptions
from app.devtools.simulate.traffic_plan import (
    OptionsError,
    PlannedDelivery,
    plan_traffic,
    webhook_body,
)
from app.devtools.simulate.transcript import (
    BotReply,
    ReplyMatcher,
    RunTally,
    UserMessage,
    bot_line,
    count_reply,
    duplicate_line,
    rejected_line,
    summary_lines,
    user_line,
)
from app.devtools.simulated_graph_api import ReceivedSend, SimulatedGraphApi
from app.ingress.signature import sign_body
from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from app.platform.redis_client import REDIS_ERRORS, connect
from app.platform.settings import Settings

# The simulated business: its phone number id, displayed number and account id.
PHONE_NUMBER_ID = "109876543210987"
DISPLAY_PHONE_NUMBER = "15550009999"
BUSINESS_ACCOUNT_ID = "102938475610293"
READY_TIMEOUT_S = 180.0


def say(line: str) -> None:
    print(f"mecove simulate: {line}", flush=True)


def service_environment(base: Mapping[str, str], *, database_url: str, redis_url: str,
                        port: int, graph_url: str, secret: str, use_llm: bool
                        ) -> dict[str, str]:
    """The environment of the ``mecove dev`` we start: ``base`` with the run's settings."""
    env = dict(base)
    env.update({
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MECOVE_PORT": str(port),
        "WHATSAPP_API_BASE_URL": graph_url,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "WHATSAPP_PERMANENT_TOKEN": "simulate-" + secrets.token_hex(16),
        "WHATSAPP_APP_SECRET": secret,
        "PYTHONUNBUFFERED": "1",
    })
    if not use_llm:
        env["GROQ_API_KEY"] = ""  # empty, not absent, so that a .env cannot bring it back
    return env


class ServiceUnderSimulation:
    """Embedded servers (for missing URLs) and a ``mecove dev`` process pointed at the fake."""

    def __init__(self, settings: Settings, options: SimulateOptions, graph_url: str,
                 secret: str) -> None:
        self.settings = settings
        self.options = options
        self.graph_url = graph_url
        self.secret = secret
        self.port = free_port()
        self.temporary = options.data_dir is None
        self.data_dir = (options.data_dir or Path(tempfile.mkdtemp(prefix="mecove-simulate-"))
                         ).expanduser().resolve()
        self.log_path = self.data_dir / "simulate-service.log"
        self.servers: EmbeddedServers | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.redis_url = settings.redis_url

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/whatsapp"

    async def start(self, stop: asyncio.Event) -> bool:
        """Start and wait until ready; False if it failed (reported) or ``stop`` was set."""
        database_url = self.settings.database_url
        if not database_url or not self.redis_url:
            servers = EmbeddedServers(self.data_dir, postgres=not database_url,
                                      redis=not self.redis_url, report=say)
            self.servers = servers
            try:
                await asyncio.to_thread(servers.start)
            except ServerStartError as exc:
                print(f"mecove simulate: {exc}", file=sys.stderr, flush=True)
                return False
            if servers.postgres is not None:
                await ensure_database(servers.postgres.admin_url, DATABASE_NAME)
                database_url = servers.postgres.url(DATABASE_NAME)
            if servers.redis is not None:
                self.redis_url = servers.redis.url
        env = service_environment(os.environ, database_url=database_url,
                                  redis_url=self.redis_url, port=self.port,
                                  graph_url=self.graph_url, secret=self.secret,
                                  use_llm=self.options.use_llm)
        self._spawn_dev(env)
        return await self._wait_until_ready(stop)

    def _spawn_dev(self, env: dict[str, str]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "dev", "--data-dir", str(self.data_dir),
                 "--host", "127.0.0.1"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    async def _wait_until_ready(self, stop: asyncio.Event) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready_url = f"http://127.0.0.1:{self.port}/ready"
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline and not stop.is_set():
                assert self.process is not None
                if self.process.poll() is not None:
                    self._report_failure(f"the service exited with {self.process.returncode}")
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if ((await client.get(ready_url)).status_code == 200
                            and await self._replier_reads()):
                        return True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
        if not stop.is_set():
            self._report_failure(f"the service was not ready within {READY_TIMEOUT_S:.0f}s")
        return False

    async def _replier_reads(self) -> bool:
        """True once the replier's consumer group exists on every partition of the log.

        A replier creates its group when it starts, before any delivery; a consumer appears in
        the group only once it has read, so the group is the sign to look for.
        """
        try:  # a cluster client on a cluster: the streams live on several masters
            redis = await connect(self.redis_url, must_answer=True)
        except REDIS_ERRORS:
            return False
        try:
            for stream in Keys.from_settings(self.settings).streams():
                groups = await redis.xinfo_groups(stream)
                if not any(as_text(g["name"]) == "replier" for g in groups):
                    return False
            return True
        except REDIS_ERRORS:  # no stream yet
            return False
        finally:
            await redis.aclose()

    def _report_failure(self, what: str) -> None:
        try:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            tail = ""
        print(f"mecove simulate: {what}; last lines of its log:\n{tail}", file=sys.stderr,
              flush=True)

    def stop(self) -> None:
        """Stop ``mecove dev`` (it stops its processes), then the embedded servers."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.servers is not None:
            self.servers.stop()
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class Conversation:
    """Posts the planned deliveries and prints both sides as they happen."""

    def __init__(self, url: str, secret: str | None, plan: list[PlannedDelivery],
                 replies: asyncio.Queue[ReceivedSend], stop: asyncio.Event) -> None:
        self.url = url
        self.secret = secret
        self.plan = plan
        self.replies = replies
        self.stop = stop
        self.matcher = ReplyMatcher()
        self.tally = RunTally()
        self.started = time.monotonic()
        self._bodies: dict[int, bytes] = {}
        self._all_answered = asyncio.Event()

    async def run(self, drain_seconds: float) -> float:
        """Send everything, wait for the replies (at most ``drain_seconds``); elapsed s."""
        self.started = time.monotonic()
        printer = asyncio.create_task(self._print_replies())
        async with httpx.AsyncClient(timeout=10) as client:
            posts = []
            for delivery in self.plan:
                delay = self.started + delivery.at_s - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), delay)
                if self.stop.is_set():
                    break
                posts.append(asyncio.create_task(self._deliver(client, delivery)))
            await asyncio.gather(*posts)
        if self.matcher.waiting() and not self.stop.is_set():
            self._all_answered.clear()
            if self.matcher.waiting():
                waits = {asyncio.create_task(self._all_answered.wait()),
                         asyncio.create_task(self.stop.wait())}
                _, pending = await asyncio.wait(waits, timeout=drain_seconds,
                                                return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
        if not self.stop.is_set():
            await asyncio.sleep(0.5)  # room for a (wrong) extra reply to show up
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
        while not self.replies.empty():
            self._show_reply(self.replies.get_nowait())
        return time.monotonic() - self.started

    async def _deliver(self, client: httpx.AsyncClient, delivery: PlannedDelivery) -> None:
        now = time.monotonic()
        user = delivery.user
        raw = self._bodies.get(delivery.number)
        if raw is None:
            raw = webhook_body(delivery, phone_number_id=PHONE_NUMBER_ID,
                               display_phone_number=DISPLAY_PHONE_NUMBER,
                               business_account_id=BUSINESS_ACCOUNT_ID,
                               timestamp=int(time.time()))
            self._bodies[delivery.number] = raw
        if delivery.duplicate:
            self.tally.duplicate_deliveries += 1
            print(duplicate_line(now - self.started, user.label, len(delivery.messages)),
                  flush=True)
        else:
            self.tally.deliveries += 1
            for planned in delivery.messages:
                message = UserMessage(planned.wamid, user.address, user.name, planned.text, now,
                                      user.username)
                self.matcher.sent(message)
                self.tally.messages += 1
                print(user_line(now - self.started, message), flush=True)
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers["X-Hub-Signature-256"] = sign_body(raw, self.secret)
        try:
            response = await client.post(self.url, content=raw, headers=headers)
            outcome = None if response.status_code == 200 else \
                f"HTTP {response.status_code} {response.text[:120]}"
        except httpx.HTTPError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        if outcome is not None and not self.stop.is_set():
            self.tally.rejected += 1
            if not delivery.duplicate:
                self.matcher.forget(user.address, {m.wamid for m in delivery.messages})
            print(rejected_line(time.monotonic() - self.started, user.label, outcome),
                  flush=True)

    async def _print_replies(self) -> None:
        while True:
            self._show_reply(await self.replies.get())

    def _show_reply(self, send: ReceivedSend) -> None:
        reply = BotReply(send.to, send.text, send.context_message_id, send.received_at,
                         send.recipient)
        answered = self.matcher.answered(reply)
        count_reply(self.tally, reply, answered)
        print(bot_line(send.received_at - self.started, reply, answered), flush=True)
        if not self.matcher.waiting():
            self._all_answered.set()


async def simulate(settings: Settings, options: SimulateOptions, plan: list[PlannedDelivery],
                   seed: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    replies: asyncio.Queue[ReceivedSend] = asyncio.Queue()
    graph = SimulatedGraphApi(lambda send: loop.call_soon_threadsafe(replies.put_nowait, send),
                              port=options.graph_port).start()
    service: ServiceUnderSimulation | None = None
    secret = settings.whatsapp_app_secret
    traffic = options.traffic
    try:
        say(f"{traffic.users} users, {traffic.rate:g} msg/s in bursts of {traffic.burst}, "
            f"{traffic.duplicates:.0%} of deliveries duplicated, {traffic.username_users:.0%} "
            f"of users with a username and no phone, {traffic.seconds:g}s "
            f"(--seed {seed})")
        if options.url is None:
            secret = secret or secrets.token_hex(16)
            service = ServiceUnderSimulation(settings, options, graph.base_url, secret)
            say(f"starting the service (mecove dev; log: {service.log_path})")
            began = time.monotonic()
            if not await service.start(stop):
                return 0 if stop.is_set() else 1
            say(f"service ready in {time.monotonic() - began:.1f}s")
            url = service.webhook_url
            say(f"replies ← fake Graph API at {graph.base_url} (the service's "
                "WHATSAPP_API_BASE_URL, dummy WhatsApp credentials)")
        else:
            url = options.url
            say(f"replies ← fake Graph API at {graph.base_url}: start the service with "
                f"WHATSAPP_API_BASE_URL={graph.base_url} and WhatsApp credentials to see them")
        say(f"webhooks → {url} "
            + ("(signed)" if secret else "(unsigned: WHATSAPP_APP_SECRET is not set)"))
        conversation = Conversation(url, secret, plan, replies, stop)
        elapsed = await conversation.run(options.drain_seconds)
        for line in summary_lines(conversation.tally, conversation.matcher.waiting(), elapsed):
            say(line)
        return 1 if conversation.tally.rejected else 0
    finally:
        if service is not None:
            say("stopping the service")
            await asyncio.to_thread(service.stop)
        graph.stop()


def run_simulate(settings: Settings, options: SimulateOptions) -> int:
    """``mecove simulate``; returns the exit code (1: not started or webhooks rejected)."""
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(10**6)
    try:
        plan = plan_traffic(options.traffic, random.Random(seed))
    except OptionsError as exc:
        print(f"mecove simulate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(simulate(settings, options, plan, seed))
