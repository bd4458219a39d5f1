"""Typed settings, built once at start-up from the environment (and ``.env``).

Nothing else in the project reads ``os.environ``.
"""

from __future__ import annotations

import base64
import binascii
import os
import socket
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import msgspec

MIN_CONSOLE_TOKEN_LENGTH = 16  # a guessable console token would expose personal data


class SettingsError(Exception):
    """A variable is missing or malformed; the message is one line naming it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str
    redis_url: str
    key_prefix: str = "mecove"
    partitions: int = 1
    port: int = 8000
    debug: bool = False
    log_level: str = "INFO"
    log_format: str = "auto"  # auto | json | text
    dedupe_ttl_days: int = 8
    tracking_window_ms: int = 60_000
    context_ttl_seconds: int = 86_400
    whatsapp_verify_token: str | None = None
    whatsapp_app_secret: str | None = None
    whatsapp_phone_number_id: str | None = None
    whatsapp_permanent_token: str | None = None
    whatsapp_api_base_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v21.0"
    # Accept unsigned webhooks although replies really go out (MECOVE_ALLOW_UNSIGNED_WEBHOOKS).
    allow_unsigned_webhooks: bool = False
    groq_api_key: str | None = None
    groq_base_url: str | None = None
    llm_config_path: str | None = None
    retry_max_attempts: int = 3
    retry_base_delay_ms: int = 1_000
    retry_factor: float = 2.0
    visibility_timeout_ms: int = 60_000
    batch_size: int = 100
    block_ms: int = 1_000
    # A projector read that finds fewer than a few events waits this long for more before
    # projecting them (decision 0017); 0 projects each read at once.
    projector_linger_ms: int = 20
    replier_concurrency: int = 32
    # Graph API sends (MECOVE_GRAPH_*): the client timeout; the recipient pair limiter (one
    # reply per interval, a burst at once); the number's throughput; how long a reply may wait
    # for its turn before it fails; and the "typing…" shown while the LLM thinks.
    graph_timeout_ms: int = 10_000
    graph_pair_interval_ms: int = 6_000
    graph_pair_burst: int = 5
    graph_max_mps: float = 80.0
    graph_pacing_give_up_ms: int = 600_000
    typing_indicator: bool = True
    contextual_after_count: int = 1
    contextual_stale_ms: int = 10_000
    metrics_port: int = 0  # consumer processes serve /metrics here when set
    summary_window_ms: int = 30_000
    summary_wait_projection_ms: int = 10_000
    consumer_name: str = ""
    console_token: str | None = None  # the operator's console at /console is off without it
    console_session_seconds: int = 28_800  # how long a console sign-in lasts
    # Wraps every user's content key (MECOVE_MASTER_KEY, base64 of 32 bytes); without it
    # content is kept in plaintext, which only tests and benchmarks may do.
    master_key: str | None = None
    # The master key being rotated away from (MECOVE_PREVIOUS_MASTER_KEY), still able to unwrap.
    previous_master_key: str | None = None
    # Replicas an append must reach before the ingress answers 200 (WAIT), and how long to wait.
    redis_min_replicas: int = 0
    redis_wait_timeout_ms: int = 500
    api_workers: int = 1  # uvicorn worker processes of ``mecove api``

    # Where each variable that was set came from: "the environment", ".env", or what
    # ``load_settings`` was given as ``fallback_origin``.
    origins: dict[str, str] = msgspec.field(default_factory=dict)

    def origin(self, name: str) -> str:
        """Where variable ``name`` came from (``the environment`` when unknown)."""
        return self.origins.get(name, "the environment")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs."""
        values = (
            self.whatsapp_app_secret,
            self.whatsapp_permanent_token,
            self.whatsapp_verify_token,
            self.groq_api_key,
            self.console_token,
            self.master_key,
            self.previous_master_key,
        )
        return tuple(v for v in values if v)

    @property
    def whatsapp_dry_run(self) -> bool:
        return not (self.whatsapp_phone_number_id and self.whatsapp_permanent_token)


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], *,
         required: bool) -> str:
    """The URL in variable ``name``: a scheme of ``schemes``, a numeric port, and for Redis a
    numeric database (redis-py would silently use database 0 for ``/abc``)."""
    value = env.get(name, "").strip()
    if not value:
        if required:
            raise SettingsError(f"{name} is not set (expected a {schemes[0]}:// URL)")
        return ""
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname and not parts.path:
        raise SettingsError(
            f"{name} is malformed: expected a URL starting with "
            + " or ".join(s + "://" for s in schemes)
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
    except ValueError:
        raise SettingsError(f"{name} is malformed: its port is not a number from 1 to 65535"
                            ) from None
    database = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and database and not database.isdigit():
        raise SettingsError(f"{name} is malformed: the database after the port must be a "
                            f"number (…:6379/0), not {database!r}")
    return value


T = TypeVar("T")


def _parsed(env: Mapping[str, str], name: str, default: T, parse: Callable[[str], T],
            expected: str) -> T:
    """``parse`` of variable ``name``, ``default`` when unset or blank; else SettingsError."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} is malformed: expected {expected}, got {raw!r}") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return _parsed(env, name, default, int, "an integer")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return _parsed(env, name, default, float, "a number")


def _bool(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _bool_default(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} is malformed: expected true or false, got {raw!r}")


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def default_consumer_name() -> str:
    """Stable per process: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def settings_from_env(env: Mapping[str, str], *, require_urls: bool = True) -> Settings:
    """Build settings from a mapping of variables; raises SettingsError naming the variable."""
    database_url = _url(env, "DATABASE_URL", ("postgresql", "postgres"), required=require_urls)
    redis_url = _url(env, "REDIS_URL", ("redis", "rediss", "unix"), required=require_urls)
    log_level = env.get("MECOVE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"MECOVE_LOG_LEVEL is malformed: {log_level!r} is not a log level")
    port = _int(env, "MECOVE_PORT", 8000)
    if not 1 <= port <= 65535:
        raise SettingsError(f"MECOVE_PORT is malformed: {port} is not a TCP port")
    partitions = _int(env, "MECOVE_PARTITIONS", 1)
    if partitions < 1:
        raise SettingsError("MECOVE_PARTITIONS is malformed: expected an integer >= 1")
    console_token = _opt(env, "MECOVE_CONSOLE_TOKEN")
    if console_token is not None and len(console_token) < MIN_CONSOLE_TOKEN_LENGTH:
        raise SettingsError(f"MECOVE_CONSOLE_TOKEN is malformed: expected at least "
                            f"{MIN_CONSOLE_TOKEN_LENGTH} characters")
    console_session_seconds = _int(env, "MECOVE_CONSOLE_SESSION_SECONDS", 28_800)
    if console_session_seconds < 1:
        raise SettingsError("MECOVE_CONSOLE_SESSION_SECONDS is malformed: expected seconds >= 1")
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        key_prefix=env.get("MECOVE_KEY_PREFIX", "mecove").strip() or "mecove",
        partitions=partitions,
        port=port,
        debug=_bool(env, "MECOVE_DEBUG"),
        log_level=log_level,
        dedupe_ttl_days=_int(env, "MECOVE_DEDUPE_TTL_DAYS", 8),
        tracking_window_ms=_int(env, "MECOVE_TRACKING_WINDOW_MS", 60_000),
        context_ttl_seconds=_int(env, "MECOVE_CONTEXT_TTL_SECONDS", 86_400),
        log_format=env.get("MECOVE_LOG_FORMAT", "auto").lower(),
        whatsapp_verify_token=_opt(env, "WHATSAPP_VERIFY_TOKEN"),
        whatsapp_app_secret=_opt(env, "WHATSAPP_APP_SECRET"),
        whatsapp_phone_number_id=_opt(env, "WHATSAPP_PHONE_NUMBER_ID"),
        whatsapp_permanent_token=_opt(env, "WHATSAPP_PERMANENT_TOKEN"),
        whatsapp_api_base_url=(
            _opt(env, "WHATSAPP_API_BASE_URL") or "https://graph.facebook.com"
        ).rstrip("/"),
        whatsapp_api_version=_opt(env, "WHATSAPP_API_VERSION") or "v21.0",
        allow_unsigned_webhooks=_bool(env, "MECOVE_ALLOW_UNSIGNED_WEBHOOKS"),
        groq_api_key=_opt(env, "GROQ_API_KEY"),
        groq_base_url=_opt(env, "GROQ_BASE_URL"),
        llm_config_path=_opt(env, "MECOVE_LLM_CONFIG"),
        retry_max_attempts=_int(env, "MECOVE_RETRY_MAX_ATTEMPTS", 3),
        retry_base_delay_ms=_int(env, "MECOVE_RETRY_BASE_DELAY_MS", 1_000),
        retry_factor=_float(env, "MECOVE_RETRY_FACTOR", 2.0),
        visibility_timeout_ms=_int(env, "MECOVE_VISIBILITY_TIMEOUT_MS", 60_000),
        batch_size=_int(env, "MECOVE_BATCH_SIZE", 100),
        block_ms=_int(env, "MECOVE_BLOCK_MS", 1_000),
        projector_linger_ms=_int(env, "MECOVE_PROJECTOR_LINGER_MS", 20),
        replier_concurrency=_int(env, "MECOVE_REPLIER_CONCURRENCY", 32),
        graph_timeout_ms=_int(env, "MECOVE_GRAPH_TIMEOUT_MS", 10_000),
        graph_pair_interval_ms=_int(env, "MECOVE_GRAPH_PAIR_INTERVAL_MS", 6_000),
        graph_pair_burst=_int(env, "MECOVE_GRAPH_PAIR_BURST", 5),
        graph_max_mps=_float(env, "MECOVE_GRAPH_MAX_MPS", 80.0),
        graph_pacing_give_up_ms=_int(env, "MECOVE_GRAPH_PACING_GIVE_UP_MS", 600_000),
        typing_indicator=_bool_default(env, "MECOVE_TYPING_INDICATOR", True),
        contextual_after_count=_int(env, "MECOVE_CONTEXTUAL_AFTER_COUNT", 1),
        contextual_stale_ms=_int(env, "MECOVE_CONTEXTUAL_STALE_MS", 10_000),
        metrics_port=_int(env, "MECOVE_METRICS_PORT", 0),
        summary_window_ms=_int(env, "MECOVE_SUMMARY_WINDOW_MS", 30_000),
        summary_wait_projection_ms=_int(env, "MECOVE_SUMMARY_WAIT_PROJECTION_MS", 10_000),
        consumer_name=env.get("MECOVE_CONSUMER_NAME", "").strip() or default_consumer_name(),
        console_token=console_token,
        console_session_seconds=console_session_seconds,
        master_key=_master_key(env, "MECOVE_MASTER_KEY"),
        previous_master_key=_master_key(env, "MECOVE_PREVIOUS_MASTER_KEY"),
        redis_min_replicas=_at_least(env, "MECOVE_REDIS_MIN_REPLICAS", 0, minimum=0),
        redis_wait_timeout_ms=_at_least(env, "MECOVE_REDIS_WAIT_TIMEOUT_MS", 500, minimum=1),
        api_workers=_at_least(env, "MECOVE_API_WORKERS", 1, minimum=1),
    )


def _at_least(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    """An integer setting of at least ``minimum``; raises SettingsError naming it otherwise."""
    value = _int(env, name, default)
    if value < minimum:
        raise SettingsError(f"{name} is malformed: expected an integer >= {minimum}")
    return value


def _master_key(env: Mapping[str, str], name: str) -> str | None:
    """A master key variable, checked: base64 of exactly 32 bytes, or unset."""
    value = _opt(env, name)
    if value is None:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(f"{name} is malformed: expected base64 of 32 bytes") from None
    if len(raw) != 32:
        raise SettingsError(f"{name} is malformed: expected base64 of 32 bytes, got {len(raw)}"
                            ) from None
    return value.strip()


def require_master_key(settings: Settings) -> None:
    """Refuse to run a process that would keep content it could never erase (SettingsError)."""
    if settings.master_key is None:
        raise SettingsError(
            "MECOVE_MASTER_KEY is not set: content would be stored unencrypted and could not be "
            "erased by `mecove forget`; generate one with `mecove master-key` and keep it safe")


def require_signed_webhooks(settings: Settings) -> None:
    """Refuse an ingress that would send real replies to unsigned, forgeable webhooks.

    Raises SettingsError (one line naming WHATSAPP_APP_SECRET) when WhatsApp sending
    credentials are set, no app secret is, and MECOVE_ALLOW_UNSIGNED_WEBHOOKS is not true.
    Dry-run (no sending credentials) never needs a secret.
    """
    if settings.whatsapp_dry_run or settings.whatsapp_app_secret:
        return
    if settings.allow_unsigned_webhooks:
        return
    raise SettingsError(
        "WHATSAPP_APP_SECRET is not set while WhatsApp sending credentials are: anyone could "
        "forge webhooks that make this number message any phone. Set WHATSAPP_APP_SECRET "
        "(Meta app dashboard > App settings > Basic), or MECOVE_ALLOW_UNSIGNED_WEBHOOKS=true "
        "to accept unsigned webhooks on purpose")


_OUR_VARIABLES = ("DATABASE_URL", "REDIS_URL", "MECOVE_", "WHATSAPP_", "GROQ_")


def load_settings(*, require_urls: bool = True, fallback: Mapping[str, str] | None = None,
                  fallback_origin: str = "") -> Settings:
    """Settings of this process: ``.env`` (if present) under the real environment.

    ``fallback`` gives values for variables that neither sets (or sets empty), recorded as
    coming from ``fallback_origin``; ``Settings.origins`` says where each variable came from.
    """
    from dotenv import dotenv_values

    dotenv = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    merged = {**dotenv, **os.environ}
    origins = {k: ".env" if k not in os.environ else "the environment"
               for k, v in merged.items() if k.startswith(_OUR_VARIABLES) and v.strip()}
    for name, value in (fallback or {}).items():
        if not merged.get(name, "").strip() and value:
            merged[name] = value
            origins[name] = fallback_origin
    settings = settings_from_env(merged, require_urls=require_urls)
    return msgspec.structs.replace(settings, origins=origins)
