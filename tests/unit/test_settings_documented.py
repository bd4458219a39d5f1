"""Every variable the settings read is documented in the README's table and in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r'"((?:MECOVE|WHATSAPP|GROQ)_[A-Z0-9_]+|DATABASE_URL|REDIS_URL)"')


def read_variables() -> list[str]:
    source = (ROOT / "app" / "platform" / "settings.py").read_text()
    return sorted(set(_VARIABLE.findall(source)))


@pytest.mark.parametrize("document", ["README.md", ".env.example"])
def test_every_variable_the_settings_read_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()
    names = read_variables()

    assert len(names) > 30
    assert [name for name in names if not re.search(rf"\b{name}\b", text)] == []
