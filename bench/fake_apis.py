"""The test suite's fake Graph and Groq APIs, served without two stdlib slow-downs.

``python -m bench.fake_apis graph|groq [the fake's own options]``

Two stdlib defaults of the fakes (``tests/fakes/http_fake.py``) cost what no real API costs,
so this launcher changes them before running the fake's own ``main``:

* ``BaseHTTPRequestHandler`` leaves Nagle's algorithm on and answers with two writes (headers,
  then body): the body waits for the client's delayed ACK, ~40 ms per answer on Linux, which
  would be most of a "zero-latency" round trip. Fixed by its ``disable_nagle_algorithm``.
* ``socketserver``'s listen backlog is 5: a replier opening 32 connections at once gets resets
  (retried by the replier after a back-off). Fixed by ``request_queue_size``.

Once the fakes set these themselves, this launcher changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("graph", "groq"):
        print("usage: python -m bench.fake_apis graph|groq [options]", file=sys.stderr)
        return 2
    from tests.fakes import http_fake

    handler = getattr(http_fake, "_Handler", None)
    server = getattr(http_fake, "_Server", None)
    if handler is None or server is None:
        print("bench.fake_apis: tests.fakes.http_fake changed shape; serving it as is",
              file=sys.stderr)
    else:
        handler.disable_nagle_algorithm = True
        server.request_queue_size = max(int(server.request_queue_size), 256)
    if args[0] == "graph":
        from tests.fakes.graph_api import main as serve
    else:
        from tests.fakes.groq_api import main as serve
    return int(serve(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
