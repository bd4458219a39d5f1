"""Sender numbers -> E.164 with a leading '+'."""

from __future__ import annotations

import pytest

from app.ingress.phone import InvalidPhoneNumber, normalise_e164


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("919130099484", "+919130099484"),
        ("+919130099484", "+919130099484"),
        ("0091 9130 099484", "+919130099484"),
        ("00919130099484", "+919130099484"),
        ("91 91300-99484", "+919130099484"),
        ("+91 (913) 009-9484", "+919130099484"),
        ("+91.913.009.9484", "+919130099484"),
        ("(91) 9130 099 484", "+919130099484"),
        ("  919130099484  ", "+919130099484"),
        ("14155550100", "+14155550100"),
        ("123456", "+123456"),
        ("123456789012345", "+123456789012345"),
    ],
    ids=["wa-id-digits", "already-e164", "double-zero-prefix-with-spaces",
         "double-zero-prefix", "space-and-dash", "parentheses-and-dashes", "dots",
         "leading-parenthesis", "surrounding-spaces", "us-number", "shortest-six-digits",
         "longest-fifteen-digits"],
)
def test_a_valid_number_becomes_e164_with_a_plus(raw: str, expected: str) -> None:
    assert normalise_e164(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "abc",
        "12",
        "12345",
        "1234567890123456",
        "+12345678901234567890",
        "0919130099484",
        "000919130099484",
        "+0919130099484",
        "91913a0099484",
        "91-9130-O99484",
        "tel:919130099484",
        "919130099484x12",
        "91_9130099484",
        "91/9130099484",
        "91\t9130099484",
    ],
    ids=["empty", "blank", "letters", "too-short", "five-digits", "sixteen-digits",
         "twenty-digits", "leading-zero", "leading-zero-after-double-zero",
         "plus-then-zero", "letter-inside", "letter-o-for-zero", "uri-scheme", "extension",
         "underscore", "slash", "tab-inside"],
)
def test_an_invalid_number_raises_invalid_phone_number(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalise_e164(raw)


def test_invalid_phone_number_is_a_value_error_naming_the_input() -> None:
    with pytest.raises(ValueError, match="'abc'"):
        normalise_e164("abc")


def test_normalising_twice_changes_nothing() -> None:
    once = normalise_e164("0091 9130 099484")

    assert normalise_e164(once) == once


@pytest.mark.parametrize("raw", ["٩١٩١٣٠٠٩٩٤٨٤", "91913009948²", "91+9130099484", "++919130099484"])
def test_non_ascii_digits_and_inner_plus_signs_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalise_e164(raw)
