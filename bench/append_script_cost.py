"""``python -m bench.append_script_cost``: Redis CPU per message of the ingress's append script.

Starts a private Redis (nice 19, a free loopback port), then builds the exact script calls the
ingress sends: ``SenderAppends.append_texts`` with a real ``EventLog`` (content sealed, default
settings), ``--senders`` senders cycled, ``--batch`` messages per call, every sender resolved
and keyed beforehand (so each call is the one-script path of a known sender). The calls are
recorded, not run, then replayed one at a time (one call in flight, as the ingress does,
decision 0028) for each variant below; before each run the keys the calls write are deleted
and the stream emptied, so every run starts from the same state, each user's recent list full
(its steady state; ``--new-users``: empty). ``--callgrind`` runs that Redis under valgrind and
counts its instructions per message instead of its CPU time (deterministic but for Lua's
garbage collector: about 2 % from run to run).

Per variant: Redis CPU per message from ``INFO cpu`` (used_cpu_user + sys, the whole server:
parsing the command included) and from ``INFO commandstats`` (evalsha usec: the script alone).
Variants (only for measurement):
* ``shipped``: ``RESOLVE_AND_APPEND_LUA`` as it is;
* ``wrapped``: the same, every ``redis.call`` through a Lua function that can skip it;
* ``-<part>``: ``wrapped`` with one part's commands skipped (its cost: ``wrapped`` minus it);
* ``lua only``: every command skipped (argument unpacking, the steps' Lua, the reply);
* ``unpack only``: ``cmsgpack.unpack`` of the packed argument, nothing else;
* ``empty``: returns at once (the call's parsing, KEYS/ARGV tables);
* ``bare XADD``: one script that XADDs the same five fields per message, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.ingress.parse_webhook import events_from_texts
from app.platform.eventlog.append import RECENT_KEPT, EventLog
from app.platform.eventlog.entries import ENTRY_FIELDS
from app.platform.identities import IdentityLinks, Resolution
from app.platform.sender_appends import RESOLVE_AND_APPEND_LUA, SenderAppends
from app.platform.settings import settings_from_env
from bench.numbered_messages import inbound_texts
from bench.processes import BENCH_MASTER_KEY
from schema.events import MessageReceived

PREFIX = "costbench"
SETTINGS_ARGS = 4  # dedupe ttl, tracking window, context ttl, recent kept (then count, packed)
RESOLVE_VALUES = 5  # per message: has bsuid, has phone, first user id, guessed user and state
APPEND_VALUES = len(ENTRY_FIELDS) + 5  # entry values, score, message id, text, at, key id

# Each part: the command, or the key family (a substring of the key), whose calls it skips.
PARTS: dict[str, str] = {
    "identity links": ":{ids}:",
    "dedupe SET": ":dedupe:",
    "XADD": "XADD",
    "tracking (ZADD, trim, PEXPIRE)": ":messages:",
    "recent (RPUSH, LTRIM, EXPIRE)": ":recent:",
    "turn (HSET, EXPIRE)": ":turn:",
}
NEVER = "~never~"  # matches no command and no key
KEY_CHECK = "redis.call('HGET', key_hash, 'id')"  # KEY_IS_CURRENT_LUA's command

_SKIPPING_CALL = """
local skipped_command = %s
local skipped_keys = %s
local real_call = redis.call
local skip_all = %s
local function skip(command)
  if command == 'GET' then return false end
  return 1
end
local function call(command, key, ...)
  if skip_all or command == skipped_command or string.find(key, skipped_keys, 1, true) then
    return skip(command)
  end
  return real_call(command, key, ...)
end
"""


def skipping(source: str, part: str = "", *, all_calls: bool = False,
             key_check: bool = True) -> str:
    """``source`` with every ``redis.call`` made through ``call``, which skips the calls of
    ``part`` (a command, or a substring of the keys; a skipped GET answers nil, any other 1),
    or every call with ``all_calls``; without ``key_check`` the content key's HGET is not
    made (taken as current). Every variant pays the same test per call."""
    part = part or NEVER
    command, keys = (part, NEVER) if part.isupper() else (NEVER, part)
    body = source if key_check else source.replace(KEY_CHECK, "key_id")
    return (_SKIPPING_CALL % (f"'{command}'", f"'{keys}'", "true" if all_calls else "false")
            + body.replace("redis.call(", "call("))


def variants() -> dict[str, str]:
    """Variant name -> Lua source, all taking the shipped script's KEYS and ARGV."""
    shipped = RESOLVE_AND_APPEND_LUA
    made = {"shipped": shipped, "wrapped": skipping(shipped)}
    for name, part in PARTS.items():
        made[f"-{name}"] = skipping(shipped, part)
    if KEY_CHECK in shipped:
        made["-content key HGET"] = skipping(shipped, key_check=False)
    made["lua only"] = skipping(shipped, all_calls=True, key_check=False)
    made["unpack only"] = "cmsgpack.unpack(ARGV[#ARGV])\nreturn 0\n"
    made["empty"] = "return 0\n"
    return made


def _bare_xadd_lua() -> str:
    pairs = ", ".join(f"'{name.decode()}', v[i + {n}]" for n, name in enumerate(ENTRY_FIELDS))
    return (f"local v = cmsgpack.unpack(ARGV[1])\nfor i = 1, #v, {len(ENTRY_FIELDS)} do\n"
            f"  redis.call('XADD', KEYS[1], '*', {pairs})\nend\nreturn 0\n")


BARE_XADD_LUA = _bare_xadd_lua()
BARE_XADD = "bare XADD"  # the variant's name


class _Recorded(Exception):
    """Stops a recorded script call from going to Redis."""


@dataclass(frozen=True, slots=True)
class Call:
    keys: list[str]
    args: list[Any]
    messages: int

    def entry_values_only(self) -> list[Any]:
        """The bare XADD script's arguments: the messages' entry values, packed."""
        values = msgspec.msgpack.decode(self.args[-1])
        appends = values[RESOLVE_VALUES * self.messages:]
        kept = [appends[i:i + len(ENTRY_FIELDS)] for i in range(0, len(appends), APPEND_VALUES)]
        return [msgspec.msgpack.encode([v for entry in kept for v in entry])]


async def recorded_calls(redis: Redis, senders: int, calls: int, batch: int) -> list[Call]:
    """The script calls the ingress sends for ``calls`` batches of ``batch`` messages."""
    settings = settings_from_env({"MECOVE_KEY_PREFIX": PREFIX,
                                  "MECOVE_MASTER_KEY": BENCH_MASTER_KEY}, require_urls=False)
    log = EventLog.from_settings(settings, redis)
    appends = SenderAppends(IdentityLinks(redis, PREFIX), log)

    async def append(start: int, count: int) -> None:
        texts = inbound_texts("cost", start, count, senders)

        def build(resolutions: list[Resolution]) -> list[MessageReceived]:
            return [e for (t, at), r in zip(texts, resolutions, strict=True)
                    for e in events_from_texts([t], at, [r])]

        await appends.append_texts([t.sender for t, _ in texts], build)

    for start in range(0, 2 * senders, batch):  # every sender resolved, keyed and guessed
        await append(start, batch)
    recorded: list[Call] = []

    async def record(key: str, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        recorded.append(Call(list(keys), list(args), int(args[SETTINGS_ARGS])))
        raise _Recorded  # not run: the caller's batch fails, nothing is remembered

    log.writes.script = record  # type: ignore[method-assign]
    for call in range(calls):
        try:
            await append(2 * senders + call * batch, batch)
        except _Recorded:
            pass
    await log.aclose()
    return recorded


async def _info_cpu(redis: Redis) -> float:
    cpu = await redis.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _reset(redis: Redis, calls: list[Call], recent_full: bool) -> None:
    """Delete what the calls wrote (but the links and content keys), empty the stream; with
    ``recent_full`` each user's recent list starts full (``RECENT_KEPT`` ids), as a user's
    with a day's history: every message then trims it."""
    written = {k for call in calls for k in call.keys
               if any(part in k for part in (":dedupe:", ":messages:", ":recent:", ":turn:"))}
    names = sorted(written)
    for start in range(0, len(names), 1000):
        await redis.delete(*names[start:start + 1000])
    await redis.xtrim(calls[0].keys[0], maxlen=0)
    if recent_full:
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                if ":recent:" in name:
                    pipe.rpush(name, *(f"earlier-{i}" for i in range(RECENT_KEPT)))
            await pipe.execute()


@dataclass(frozen=True, slots=True)
class Callgrind:
    """A Redis under callgrind: its instructions counted between ``zero`` and ``total``."""

    pid: int
    out: Path

    def _control(self, option: str) -> None:
        subprocess.run(["callgrind_control", option, str(self.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def zero(self) -> None:
        self._control("-z")

    def total(self) -> int:
        """Instructions since ``zero`` (dumps them; the newest dump's summary line)."""
        self._control("-d")
        dumps = sorted(self.out.parent.glob(f"{self.out.name}.*"),
                       key=lambda path: int(path.suffix[1:]))
        for line in dumps[-1].read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no summary in {dumps[-1]}")


async def run_variant(redis: Redis, source: str, calls: list[Call], bare: bool = False,
                      callgrind: Callgrind | None = None,
                      recent_full: bool = True) -> tuple[float, float]:
    """Redis CPU us per message (INFO cpu), or instructions per message under ``callgrind``,
    and evalsha usec per message (commandstats)."""
    await _reset(redis, calls, recent_full)
    sha = await redis.script_load(source)
    await redis.config_resetstat()  # our private Redis only
    before = await _info_cpu(redis)
    if callgrind is not None:
        callgrind.zero()
    for call in calls:
        if bare:
            await redis.evalsha(sha, 1, call.keys[0], *call.entry_values_only())
        else:
            await redis.evalsha(sha, len(call.keys), *call.keys, *call.args)
    cpu = await _info_cpu(redis) - before
    if callgrind is not None:
        cpu = callgrind.total() / 1e6
    stats = await redis.info("commandstats")
    usec = float(stats.get("cmdstat_evalsha", {}).get("usec", 0))
    messages = sum(call.messages for call in calls)
    return cpu / messages * 1e6, usec / messages


async def command_costs(redis: Redis, calls: list[Call]) -> dict[str, tuple[float, float]]:
    """Per command of the shipped script: calls and usec per message (commandstats)."""
    await run_variant(redis, RESOLVE_AND_APPEND_LUA, calls)
    stats = await redis.info("commandstats")
    messages = sum(call.messages for call in calls)
    return {name.removeprefix("cmdstat_"): (float(v["calls"]) / messages,
                                            float(v["usec"]) / messages)
            for name, v in stats.items() if name != "cmdstat_evalsha"}


async def measure(port: int, options: argparse.Namespace, callgrind: Callgrind | None) -> None:
    redis = Redis(host="127.0.0.1", port=port)
    try:
        calls = await recorded_calls(redis, options.senders, options.calls, options.batch)
        messages = sum(call.messages for call in calls)
        print(f"{len(calls)} calls, {messages / len(calls):.1f} messages per call, "
              f"{options.rounds} rounds (lowest shown)")
        made = {name: source for name, source in variants().items()
                if not options.only or name in options.only}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in made}
        for _ in range(options.rounds):
            for name, source in made.items():
                results[name].append(await run_variant(
                    redis, source, calls, callgrind=callgrind, recent_full=not options.new_users))
            if not options.only or BARE_XADD in options.only:
                results.setdefault(BARE_XADD, []).append(
                    await run_variant(redis, BARE_XADD_LUA, calls, True, callgrind))
        unit = "instructions/msg" if callgrind else "INFO cpu us/msg"
        print(f"{'variant':<34} {unit:>16} {'evalsha us/msg':>15} {'part (wrapped - it)':>20}")
        # Under callgrind the parts are in instructions (deterministic), else in evalsha usec.
        column = 0 if callgrind else 1
        reference = min((r[column] for r in results.get("wrapped", [])), default=0.0)
        for name, rows in results.items():
            cpu, usec = min(r[0] for r in rows), min(r[1] for r in rows)
            part = (f"{reference - min(r[column] for r in rows):>20,.1f}"
                    if name.startswith("-") else "")
            print(f"{name:<34} {cpu:>16,.1f} {usec:>15.1f} {part}")
        if options.only:
            return
        print("shipped script, commands it ran (commandstats): calls and usec per message")
        for name, (count, usec) in sorted((await command_costs(redis, calls)).items()):
            print(f"  {name:<18} {count:>6.2f} {usec:>8.2f}")
    finally:
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=16, help="messages per script call")
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", action="append", help="run only this variant (repeatable)")
    parser.add_argument("--new-users", action="store_true",
                        help="start each run with empty recent lists (default: full ones)")
    parser.add_argument("--callgrind", action="store_true",
                        help="count Redis's instructions (valgrind) instead of its CPU time")
    options = parser.parse_args(argv)
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="mecove-append-cost-"))
    out = directory / "redis.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    server = subprocess.Popen(
        ["nice", "-n", "19", *(valgrind if options.callgrind else []), "redis-server",
         "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(10 if options.callgrind else 0.5)
        asyncio.run(measure(port, options, Callgrind(server.pid, out) if options.callgrind
                            else None))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
