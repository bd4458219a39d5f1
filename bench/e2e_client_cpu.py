"""The replier's HTTP clients alone: CPU per call of the LLM call, "typing…" and the send.

Each of a reply's three HTTP calls, ``--calls`` times in a row (after a warm-up), against the
test suite's fakes in their own processes, through one shared ``KeepAliveTransport`` as the
replier wires them. Only this process's CPU (``time.process_time``) is counted, so the figure
is the client's own cost and moves little with the machine's load; the best of ``--rounds`` is
printed with every round. Run it in two checkouts to compare them.

``python -m bench.e2e_client_cpu --calls 1000``
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

import uvloop

from app.platform.http_transport import KeepAliveTransport
from consumers.llm.chat_client import ChatClient
from consumers.llm.llm_config import load_llm_config
from consumers.whatsapp.graph_client import GraphClient

TOKEN = "bench-token"


def _start_fake(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    fake = subprocess.Popen([sys.executable, "-m", module, "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True)
    assert fake.stdout is not None
    found = re.search(r":(\d+)", fake.stdout.readline())
    if found is None:
        fake.kill()
        raise RuntimeError(f"{module} did not say where it listens")
    return fake, f"http://127.0.0.1:{found.group(1)}"


async def _cpu_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - started) / calls * 1e6


async def measure(calls: int, rounds: int, warmup: int) -> None:
    groq, groq_url = _start_fake("tests.fakes.groq_api", "--reply-text", "Thanks!")
    graph, graph_url = _start_fake("tests.fakes.graph_api", "--expected-token", TOKEN)
    try:
        transport = KeepAliveTransport(max_connections=8)
        chat = ChatClient(load_llm_config(), "bench-key", groq_url, transport)
        whatsapp = GraphClient(base_url=graph_url, version="v21.0", phone_number_id="1",
                               token=TOKEN, transport=transport)
        targets: dict[str, Callable[[], Awaitable[object]]] = {
            "LLM call (groq SDK)": lambda: chat.complete("system", "hello there", "Noted."),
            "typing… (Graph)": lambda: whatsapp.show_typing("wamid.bench"),
            "send (Graph)": lambda: whatsapp.send_text("+15550001", "Thanks!", None),
        }
        for call in targets.values():
            for _ in range(warmup):
                await call()
        fallback = await chat.complete("system", "hello there", "Noted.")
        if fallback.fallback_used:
            raise RuntimeError(f"the LLM call fell back: {fallback.error}")
        for name, call in targets.items():
            figures = [await _cpu_per_call(call, calls) for _ in range(rounds)]
            print(f"{name:22} client CPU per call: best {min(figures):,.0f} µs "
                  f"(rounds {', '.join(f'{f:,.0f}' for f in figures)})")
    finally:
        groq.kill()
        graph.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    uvloop.run(measure(args.calls, args.rounds, args.warmup))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
