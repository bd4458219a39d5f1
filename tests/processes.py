"""Running ``mecove`` commands as real processes in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a ``mecove`` process use ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "GROQ_"))}
    values = {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MECOVE_KEY_PREFIX": settings.key_prefix,
        "MECOVE_PARTITIONS": str(settings.partitions),
        "MECOVE_PORT": str(settings.port),
        "MECOVE_RETRY_BASE_DELAY_MS": str(settings.retry_base_delay_ms),
        "MECOVE_VISIBILITY_TIMEOUT_MS": str(settings.visibility_timeout_ms),
        "MECOVE_BLOCK_MS": str(settings.block_ms),
        "MECOVE_LOG_FORMAT": "json",
        "WHATSAPP_APP_SECRET": settings.whatsapp_app_secret or "",
        "WHATSAPP_VERIFY_TOKEN": settings.whatsapp_verify_token or "",
        "WHATSAPP_PHONE_NUMBER_ID": settings.whatsapp_phone_number_id or "",
        "WHATSAPP_PERMANENT_TOKEN": settings.whatsapp_permanent_token or "",
        "WHATSAPP_API_BASE_URL": settings.whatsapp_api_base_url,
        "WHATSAPP_API_VERSION": settings.whatsapp_api_version,
        "GROQ_API_KEY": settings.groq_api_key or "",
        "GROQ_BASE_URL": settings.groq_base_url or "",
        "MECOVE_MASTER_KEY": settings.master_key or "",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(values)
    env.update(extra)
    return env


def start_mecove(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """``python -m app.cli <args>`` with its output going to ``log_path``."""
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def wait_for_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - a local test URL
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")
