"""Graph API errors are classified from Meta's error body: retry or give up."""

import json

import pytest

from app.platform.runtime.retry_policy import NonRetryableError, RetryableError
from consumers.whatsapp.graph_client import classify, message_body, parse_graph_error


def _body(code: int) -> bytes:
    return json.dumps({"error": {"message": f"(#{code}) something", "type": "OAuthException",
                                 "code": code, "fbtrace_id": "x"}}).encode()


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, 130429, True),  # throughput rate limit
        (400, 131056, True),  # pair rate limit
        (400, 131048, True),  # spam rate limit
        (400, 80007, True),  # WABA rate limit
        (400, 4, True),  # app rate limit
        (429, 130429, True),
        (500, 1, True),
        (503, 2, True),
        (401, 190, False),  # access token expired
        (400, 131047, False),  # 24-hour window closed
        (400, 100, False),  # invalid parameter
        (403, 10, False),  # permission denied
    ],
)
def test_each_meta_error_code_is_classified(status: int, code: int, retryable: bool) -> None:
    error = classify(parse_graph_error(status, _body(code)))
    assert isinstance(error, RetryableError if retryable else NonRetryableError)
    assert str(code) in str(error)


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (502, True),
                                                    (400, False), (404, False)])
def test_a_body_that_is_not_meta_json_is_classified_by_status(status: int, retryable: bool
                                                               ) -> None:
    error = classify(parse_graph_error(status, b"<html>bad gateway</html>"))
    assert isinstance(error, RetryableError if retryable else NonRetryableError)


def test_a_standalone_body_has_no_context_key() -> None:
    body = message_body("+919130099484", "hi", None)
    assert body == {"messaging_product": "whatsapp", "to": "+919130099484", "type": "text",
                    "text": {"body": "hi"}}


def test_a_contextual_body_quotes_the_wamid() -> None:
    assert message_body("+1555", "hi", "wamid.X")["context"] == {"message_id": "wamid.X"}
