"""A fake Groq whose answer names the message it answers, runnable as its own process.

``python -m tests.faults.echo_groq --port 0 --expected-api-key K`` prints
``listening http://127.0.0.1:PORT`` and serves until SIGTERM. Every completion is
``re: <last line of the prompt>``: the replier's prompt ends with ``User: <message>``, and the
soak's messages name their wamid, so each reply sent to the Graph API names its message.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from tests.fakes.groq_api import FakeGroqApi
from tests.fakes.http_fake import serve_standalone, standalone_parser

REPLY_PREFIX = "re: "


def echo_last_line(body: dict[str, Any]) -> str:
    """``re: <the last line of the last message>``, without its ``User: `` label."""
    messages = body.get("messages") or [{}]
    content = str(messages[-1].get("content") or "")
    last = content.splitlines()[-1] if content else ""
    return REPLY_PREFIX + last.removeprefix("User: ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = standalone_parser("Fake Groq that echoes the message it answers")
    parser.add_argument("--expected-api-key", default=None)
    args = parser.parse_args(argv)
    fake = FakeGroqApi(args.host, args.port, responder=echo_last_line,
                       expected_api_key=args.expected_api_key, verbose=args.verbose)
    fake.latency_s = args.latency
    serve_standalone(fake)
    return 0


if __name__ == "__main__":
    sys.exit(main())
