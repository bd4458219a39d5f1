"""The console token of ``mecove dev``: the configured one, else one generated once and kept in
the data folder (readable by its owner only), so the printed link survives restarts."""

from __future__ import annotations

import secrets
from pathlib import Path

__all__ = ["console_link", "dev_console_token"]

TOKEN_FILE = "console-token"


def dev_console_token(configured: str | None, data_dir: Path) -> str:
    """``configured`` when set, else the token stored in ``data_dir`` (created if absent)."""
    if configured:
        return configured
    path = data_dir / TOKEN_FILE
    if path.exists():
        stored = path.read_text().strip()
        if stored:
            return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def console_link(port: int, token: str) -> str:
    """The ready-to-click sign-in link ``mecove dev`` prints once."""
    return f"http://127.0.0.1:{port}/console?token={token}"
