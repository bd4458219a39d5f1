"""The baselines the ingress is measured against, each served by uvicorn like ``mecove api``.

``UVICORN_OPTIONS`` are the keyword arguments ``app/cli.py`` passes to ``uvicorn.run`` for
``mecove api`` (one worker, no access log); every baseline gets exactly these, as JSON on its
command line, so the servers differ only in the application.
"""

from __future__ import annotations

UVICORN_OPTIONS: dict[str, object] = {
    "log_level": "warning",
    "log_config": None,
    "access_log": False,
    "lifespan": "on",
    "timeout_graceful_shutdown": 10,
}
