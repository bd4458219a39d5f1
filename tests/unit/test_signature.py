"""Meta's X-Hub-Signature-256 check and the verify-token comparison."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.ingress.signature import sign_body, signature_is_valid, tokens_match

SECRET = "app-secret-123"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def _expected_header(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_sign_body_gives_the_sha256_hmac_hex_digest_with_its_prefix() -> None:
    assert sign_body(BODY, SECRET) == _expected_header(BODY, SECRET)


def test_a_valid_signature_is_accepted() -> None:
    assert signature_is_valid(BODY, _expected_header(BODY, SECRET), SECRET)


def test_a_valid_signature_of_an_empty_body_is_accepted() -> None:
    assert signature_is_valid(b"", _expected_header(b"", SECRET), SECRET)


def test_surrounding_whitespace_in_the_header_is_tolerated() -> None:
    assert signature_is_valid(BODY, f"  {_expected_header(BODY, SECRET)}\n", SECRET)


def test_a_signature_made_with_another_secret_is_rejected() -> None:
    assert not signature_is_valid(BODY, _expected_header(BODY, "other-secret"), SECRET)


def test_a_tampered_body_is_rejected() -> None:
    header = _expected_header(BODY, SECRET)

    assert not signature_is_valid(BODY.replace(b"[]", b"[{}]"), header, SECRET)
    assert not signature_is_valid(BODY + b" ", header, SECRET)


def test_a_missing_header_is_rejected() -> None:
    assert not signature_is_valid(BODY, None, SECRET)


def test_an_empty_header_is_rejected() -> None:
    assert not signature_is_valid(BODY, "", SECRET)


def test_a_header_without_the_sha256_prefix_is_rejected() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()

    assert not signature_is_valid(BODY, digest, SECRET)


@pytest.mark.parametrize(
    "header",
    [
        "sha256=",
        "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(),
        "sha256=" + "0" * 64,
        "sha256=not-hex",
        "sha256=é",
    ],
    ids=["prefix-only", "sha1", "zeros", "not-hex", "non-ascii"],
)
def test_a_header_with_a_wrong_digest_is_rejected(header: str) -> None:
    assert not signature_is_valid(BODY, header, SECRET)


def test_a_truncated_digest_is_rejected() -> None:
    assert not signature_is_valid(BODY, _expected_header(BODY, SECRET)[:-1], SECRET)


def test_tokens_match_when_equal() -> None:
    assert tokens_match("verify-me", "verify-me")


@pytest.mark.parametrize("given", ["verify-you", "verify-me ", "VERIFY-ME", "", "verify"])
def test_tokens_do_not_match_when_different(given: str) -> None:
    assert not tokens_match(given, "verify-me")


def test_a_missing_token_never_matches() -> None:
    assert not tokens_match(None, "verify-me")


def test_non_ascii_tokens_are_compared_without_error() -> None:
    assert tokens_match("jeton-é", "jeton-é")
    assert not tokens_match("jeton-e", "jeton-é")


@pytest.mark.parametrize("secret", ["", "s", "x" * 63, "y" * 64, "z" * 65, "ü" * 40, "k" * 300])
@pytest.mark.parametrize("body", [b"", b"a", BODY, bytes(range(256)) * 9])
def test_the_signature_is_the_standard_hmac_for_keys_of_every_length(secret: str,
                                                                     body: bytes) -> None:
    # Keys shorter than, equal to and longer than SHA-256's 64-byte block (then hashed first).
    assert sign_body(body, secret) == _expected_header(body, secret)
    assert sign_body(body, secret) == _expected_header(body, secret)  # the cached states unchanged
