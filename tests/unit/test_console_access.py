"""Console sessions, CSRF tokens, the sign-in throttle and the dev token (no servers)."""

from __future__ import annotations

from pathlib import Path

from app.console.dev_token import console_link, dev_console_token
from app.console.session import SessionSigner
from app.console.throttle import SignInThrottle

TOKEN = "a-console-token-0123456789"


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_a_session_is_valid_until_it_expires() -> None:
    clock = Clock()
    signer = SessionSigner(TOKEN, ttl_seconds=60, clock_ms=clock)
    cookie = signer.issue()
    assert signer.verify(cookie) is not None
    clock.now += 59_999
    assert signer.verify(cookie) is not None
    clock.now += 1
    assert signer.verify(cookie) is None


def test_a_tampered_forged_or_malformed_cookie_is_refused() -> None:
    signer = SessionSigner(TOKEN, 60, clock_ms=Clock())
    expires, nonce, signature = signer.issue().split(".")
    later = str(int(expires) + 10**9)
    assert signer.verify(f"{later}.{nonce}.{signature}") is None
    assert signer.verify(SessionSigner("another-token-012345", 60, Clock()).issue()) is None
    for junk in (None, "", "x", "..", "1.2", "a.b.c"):
        assert signer.verify(junk) is None


def test_csrf_tokens_belong_to_one_session_and_one_console_token() -> None:
    signer = SessionSigner(TOKEN, 60, clock_ms=Clock())
    one = signer.verify(signer.issue())
    two = signer.verify(signer.issue())
    assert one and two
    assert signer.csrf_is_right(one, signer.csrf_token(one))
    assert not signer.csrf_is_right(one, signer.csrf_token(two))
    assert not signer.csrf_is_right(one, None)
    assert not SessionSigner("another-token-012345", 60, Clock()).csrf_is_right(
        one, signer.csrf_token(one))


def test_only_the_console_token_itself_is_right() -> None:
    signer = SessionSigner(TOKEN, 60)
    assert signer.token_is_right(TOKEN)
    assert not signer.token_is_right(TOKEN[:-1]) and not signer.token_is_right("")


def test_the_throttle_refuses_after_five_failures_until_the_window_moves_on() -> None:
    clock = Clock()
    throttle = SignInThrottle(allowed=5, window_ms=60_000, clock_ms=clock)
    for _ in range(5):
        assert throttle.wait_ms("10.0.0.1") == 0
        throttle.record_failure("10.0.0.1")
        clock.now += 1_000
    assert throttle.wait_ms("10.0.0.1") == 55_000
    assert throttle.wait_ms("10.0.0.2") == 0  # another client is not punished
    clock.now += 55_000
    assert throttle.wait_ms("10.0.0.1") == 0


def test_a_right_token_clears_the_failures_and_the_table_stays_bounded() -> None:
    throttle = SignInThrottle(allowed=2, max_clients=3, clock_ms=Clock())
    throttle.record_failure("a")
    throttle.record_success("a")
    throttle.record_failure("a")
    assert throttle.wait_ms("a") == 0
    for client in "bcde":
        throttle.record_failure(client)
        throttle.record_failure(client)
    assert throttle.wait_ms("b") == 0  # evicted, the oldest first
    assert throttle.wait_ms("e") > 0


def test_mecove_dev_keeps_one_generated_token_in_its_data_folder(tmp_path: Path) -> None:
    first = dev_console_token(None, tmp_path / "data")
    assert len(first) >= 32
    assert dev_console_token(None, tmp_path / "data") == first
    assert (tmp_path / "data" / "console-token").stat().st_mode & 0o077 == 0
    assert dev_console_token("given-token-0123456789", tmp_path / "data") == \
        "given-token-0123456789"
    assert console_link(8000, "t") == "http://127.0.0.1:8000/console?token=t"
