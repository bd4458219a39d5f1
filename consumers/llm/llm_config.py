"""``llm.yaml`` as a typed value."""

from __future__ import annotations

from pathlib import Path

import msgspec
import yaml

DEFAULT_PATH = Path(__file__).with_name("llm.yaml")


class ReplyPrompt(msgspec.Struct, frozen=True):
    prompt_version: str
    system_prompt: str
    fallback_text: str = "Noted."


class SummaryPrompt(msgspec.Struct, frozen=True):
    prompt_version: str
    system_prompt: str


class LlmConfig(msgspec.Struct, frozen=True):
    provider: str
    model: str
    temperature: float
    max_tokens: int
    timeout_seconds: float
    reply: ReplyPrompt
    summary: SummaryPrompt


class LlmConfigError(Exception):
    """``llm.yaml`` is missing or does not have the expected fields."""


def load_llm_config(path: str | Path | None = None) -> LlmConfig:
    target = Path(path) if path else DEFAULT_PATH
    try:
        raw = yaml.safe_load(target.read_text())
        return msgspec.convert(raw, LlmConfig)
    except (OSError, yaml.YAMLError, msgspec.ValidationError) as exc:
        raise LlmConfigError(f"LLM config {target} is unusable: {exc}") from exc
