"""The options of ``mecove simulate``, kept light: the command line imports this module."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from app.devtools.simulate.traffic_plan import TrafficOptions


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    traffic: TrafficOptions
    url: str | None = None
    data_dir: Path | None = None
    seed: int | None = None
    drain_seconds: float = 15.0
    use_llm: bool = False
    graph_port: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SimulateOptions:
        return cls(
            traffic=TrafficOptions(users=args.users, rate=args.rate, burst=args.burst,
                                   duplicates=args.duplicates, seconds=args.seconds,
                                   username_users=args.username_users),
            url=args.url,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            seed=args.seed,
            drain_seconds=args.drain,
            use_llm=args.use_llm,
            graph_port=args.graph_port,
        )


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrafficOptions()
    parser.add_argument("--users", type=int, default=defaults.users,
                        help="simulated WhatsApp users (default %(default)s)")
    parser.add_argument("--rate", type=float, default=defaults.rate,
                        help="messages per second, all users together (default %(default)s)")
    parser.add_argument("--burst", type=int, default=defaults.burst,
                        help="messages per delivery, one user's burst (default %(default)s)")
    parser.add_argument("--duplicates", type=float, default=defaults.duplicates,
                        help="fraction of deliveries posted twice, as Meta retries "
                             "(default %(default)s)")
    parser.add_argument("--seconds", type=float, default=defaults.seconds,
                        help="how long to send (default %(default)s)")
    parser.add_argument("--username-users", type=float, default=defaults.username_users,
                        help="fraction of users who adopted a WhatsApp username: named by a "
                             "business-scoped user id, no phone number (default %(default)s)")
    parser.add_argument("--url", default=None,
                        help="webhook URL of a running service (default: start one)")
    parser.add_argument("--data-dir", default=None,
                        help="embedded servers' folder (default: a temporary one, removed)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run's traffic")
    parser.add_argument("--drain", type=float, default=15.0,
                        help="seconds to wait for the last replies (default %(default)s)")
    parser.add_argument("--use-llm", action="store_true",
                        help="keep GROQ_API_KEY for the service (default: replies are 'Noted.')")
    parser.add_argument("--graph-port", type=int, default=0,
                        help="port of the fake Graph API (default: a free one)")
