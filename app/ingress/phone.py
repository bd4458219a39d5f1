"""Phone numbers as E.164 with a leading ``+``."""

from __future__ import annotations


class InvalidPhoneNumber(ValueError):
    """The sender's number cannot be an E.164 number."""


def normalise_e164(raw: str) -> str:
    """``'91 91300-99484'`` or ``'+919130099484'`` -> ``'+919130099484'``.

    Meta sends ``wa_id`` digits without ``+``; separators are dropped, a leading ``00``
    international prefix is removed. E.164 allows at most 15 digits and never a leading 0.
    """
    text = raw.strip()
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if text.isascii() and text.isdigit():  # what Meta sends: skip the separators' scan
        digits = stripped = text
    else:
        digits = "".join(ch for ch in text if ch in "0123456789")
        stripped = "".join(ch for ch in text if ch not in "-. ()")
    if stripped != digits or not 6 <= len(digits) <= 15 or digits[0] == "0":
        raise InvalidPhoneNumber(f"not an E.164 number: {raw!r}")
    return "+" + digits
