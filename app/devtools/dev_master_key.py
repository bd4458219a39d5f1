"""The master key of a ``mecove dev`` data folder: made once, kept in ``master_key`` there."""

from __future__ import annotations

from pathlib import Path

from app.platform.eventlog.content_crypto import MasterKeys

MASTER_KEY_FILE = "master_key"


def dev_master_key(configured: str | None, data_dir: Path) -> str:
    """``configured`` when set, else the key stored in ``data_dir`` (created, mode 0600)."""
    if configured:
        return configured
    path = data_dir / MASTER_KEY_FILE
    if path.exists() and (stored := path.read_text().strip()):
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    key = MasterKeys.generate_text()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key
