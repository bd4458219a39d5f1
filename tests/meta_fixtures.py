"""Meta's own example webhooks (every kind: texts, media, statuses, system changes) for tests.

Bodies we make up ourselves come from ``app.devtools.webhook_bodies``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# A copy of ../shared/fixtures/meta-webhooks-pywa (MIT, from pywa), kept in the repo for CI.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "meta-webhooks-pywa"


def fixture_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """Every (file, variant, body) of the Meta webhook fixtures."""
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        for variant, body in json.loads(path.read_text()).items():
            out.append((path.name, variant, body))
    return out


def fixture_body(file: str, variant: str) -> dict[str, Any]:
    """The body of one fixture ``variant`` of ``file`` (e.g. "message.json", "text")."""
    return json.loads((FIXTURES / file).read_text())[variant]
