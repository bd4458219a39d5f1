"""Structured logs: JSON lines when not on a terminal, key=value on one; secrets scrubbed.

Use ``log.info("message appended", extra={"fields": {"event_id": ..., "message_id": ...}})``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable

import msgspec

_json = msgspec.json.Encoder()


class _Scrubber:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, scrub: _Scrubber) -> None:
        super().__init__()
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return self._scrub(_json.encode(line).decode())


class TextFormatter(logging.Formatter):
    def __init__(self, scrub: _Scrubber) -> None:
        super().__init__()
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = " ".join(f"{k}={v}" for k, v in (getattr(record, "fields", {}) or {}).items())
        text = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            text += " " + fields
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return self._scrub(text)


def configure_logging(*, level: str, fmt: str, secrets: Iterable[str]) -> None:
    """Route every logger to stderr in the chosen format; never prints a secret value."""
    scrub = _Scrubber(secrets)
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(scrub) if use_json else TextFormatter(scrub))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs full request URLs at INFO; keep third-party chatter at WARNING.
    for noisy in ("httpx", "httpcore", "groq", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
