"""What the api process holds: no module it does not use, start-up objects out of GC's walks."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from app.platform.start_up_objects import start_up_objects_frozen

# Builds the ingress app as ``mecove api`` does (the command line imported first), then prints
# which of the heavy packages it never needs were imported.
_IMPORTED = """
import sys
import app.cli
from app.ingress.app_factory import create_app
from app.platform.settings import load_settings
app = create_app(load_settings())
print(sorted(name for name in ("piccolo", "pydantic", "black", "jinja2") if name in sys.modules))
"""


def _imported_by_the_api(**extra: str) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
           "REDIS_URL": "redis://127.0.0.1:1/0", "WHATSAPP_APP_SECRET": "secret", **extra}
    done = subprocess.run([sys.executable, "-c", _IMPORTED], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.strip()


def test_the_api_imports_neither_piccolo_nor_pydantic_nor_jinja() -> None:
    assert _imported_by_the_api() == "[]"


def test_the_console_still_brings_its_templates() -> None:
    assert _imported_by_the_api(MECOVE_CONSOLE_TOKEN="t" * 32) == "['jinja2']"


@pytest.mark.skipif(gc.get_freeze_count() > 0, reason="something else froze objects")
def test_start_up_objects_are_frozen_for_the_block_only() -> None:
    made_before = [1]  # a container: tracked by the collector
    with start_up_objects_frozen() as frozen:
        assert frozen > 0 and gc.get_freeze_count() > 0
        assert not any(found is made_before for found in gc.get_objects(generation=2))
    assert gc.get_freeze_count() == 0
    assert any(found is made_before for found in gc.get_objects(generation=2))
