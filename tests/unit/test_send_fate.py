"""Every httpx error a send can raise is either provably not sent (retry) or in doubt."""

import inspect

import httpx
import pytest

from consumers.whatsapp.graph_client import (
    GraphPairLimited,
    GraphPermanentError,
    GraphRetryableError,
    GraphThroughputLimited,
    SendFate,
    classify,
    parse_graph_error,
    send_fate,
    typing_indicator_body,
)

NOT_SENT, IN_DOUBT = SendFate.NOT_SENT, SendFate.IN_DOUBT

FATES: dict[type[Exception], SendFate] = {
    # Raised before the request is written: retried.
    httpx.ConnectError: NOT_SENT,
    httpx.ConnectTimeout: NOT_SENT,
    httpx.PoolTimeout: NOT_SENT,
    httpx.ProxyError: NOT_SENT,
    httpx.UnsupportedProtocol: NOT_SENT,
    httpx.InvalidURL: NOT_SENT,
    # Raised once the request may have been (partly) written: in doubt, never resent.
    httpx.ReadTimeout: IN_DOUBT,
    httpx.WriteTimeout: IN_DOUBT,
    httpx.ReadError: IN_DOUBT,
    httpx.WriteError: IN_DOUBT,
    httpx.CloseError: IN_DOUBT,
    httpx.RemoteProtocolError: IN_DOUBT,
    httpx.LocalProtocolError: IN_DOUBT,
    httpx.ProtocolError: IN_DOUBT,
    httpx.NetworkError: IN_DOUBT,
    httpx.TimeoutException: IN_DOUBT,
    httpx.TransportError: IN_DOUBT,
    httpx.RequestError: IN_DOUBT,
    httpx.DecodingError: IN_DOUBT,
    httpx.TooManyRedirects: IN_DOUBT,
    httpx.HTTPError: IN_DOUBT,
    httpx.HTTPStatusError: IN_DOUBT,
    httpx.CookieConflict: IN_DOUBT,
    httpx.StreamError: IN_DOUBT,
    httpx.StreamConsumed: IN_DOUBT,
    httpx.StreamClosed: IN_DOUBT,
    httpx.ResponseNotRead: IN_DOUBT,
    httpx.RequestNotRead: IN_DOUBT,
}


def _instance(kind: type[Exception]) -> Exception:
    if kind is httpx.HTTPStatusError:
        request = httpx.Request("POST", "http://x")
        return kind("x", request=request, response=httpx.Response(500, request=request))
    if issubclass(kind, httpx.StreamError) and kind is not httpx.StreamError:
        return kind()  # type: ignore[call-arg]
    return kind("x")


@pytest.mark.parametrize("kind", list(FATES), ids=lambda k: k.__name__)
def test_each_httpx_error_has_its_send_fate(kind: type[Exception]) -> None:
    assert send_fate(_instance(kind)) is FATES[kind]


def test_the_table_names_every_exception_httpx_exports() -> None:
    exported = {c for c in vars(httpx).values()
                if inspect.isclass(c) and issubclass(c, Exception)}
    assert exported == set(FATES)


def test_an_error_outside_httpx_is_in_doubt() -> None:
    assert send_fate(RuntimeError("boom")) is IN_DOUBT


@pytest.mark.parametrize(("status", "code", "kind"), [
    (429, 131056, GraphPairLimited),
    (400, 131056, GraphPairLimited),
    (429, 130429, GraphThroughputLimited),
    (400, 80007, GraphThroughputLimited),
    (400, 4, GraphThroughputLimited),
    (500, 1, GraphRetryableError),
    (400, 131047, GraphPermanentError),
])
def test_rate_limit_codes_get_their_own_failure(status: int, code: int, kind: type) -> None:
    body = b'{"error": {"code": %d, "message": "m"}}' % code
    assert type(classify(parse_graph_error(status, body))) is kind


def test_a_typing_indicator_marks_the_message_read() -> None:
    assert typing_indicator_body("wamid.X") == {
        "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.X",
        "typing_indicator": {"type": "text"}}
