"""``LocalHttpServer`` over a raw socket: what its own request parser must get right (the
fakes' tests cover it through httpx and the groq SDK)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from app.devtools.local_http_server import HttpAnswer, HttpRequest, LocalHttpServer


class Recorder:
    def __init__(self) -> None:
        self.seen: list[HttpRequest] = []
        self.release = threading.Event()

    def __call__(self, request: HttpRequest) -> HttpAnswer:
        self.seen.append(request)
        if request.target == "/crash":
            raise RuntimeError("boom")
        if request.target == "/block":
            self.release.wait(10)
        body = json.dumps({"n": len(self.seen), "body": request.body.decode()}).encode()
        return HttpAnswer(201, body, headers={"X-Extra": "yes"})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[LocalHttpServer]:
    with LocalHttpServer(recorder, name="probe") as running:
        yield running


def connect(server: LocalHttpServer) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=5)


def read_answers(sock: socket.socket, count: int) -> list[tuple[str, dict[str, str], bytes]]:
    """``count`` answers (status line, lower-cased headers, body) read off ``sock``."""
    data = b""
    answers = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answer(s): {data!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        size = int(headers["content-length"])
        while len(data) < size:
            data += sock.recv(65536)
        answers.append((status, headers, data[:size]))
        data = data[size:]
    return answers


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_pipelined_requests_on_one_connection_are_parsed_and_answered_in_order(
    server: LocalHttpServer, recorder: Recorder
) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST //v1/x?a=1 HTTP/1.1\r\nHost: h\r\nX-Twice: one\r\nx-twice: two\r\n"
            b"Content-Length: 5\r\n\r\nhello"
            b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        first, second = read_answers(sock, 2)
    assert first[0] == "HTTP/1.1 201 Created"
    assert first[1]["content-type"] == "application/json"
    assert first[1]["x-extra"] == "yes"
    assert json.loads(first[2]) == {"n": 1, "body": "hello"}
    assert json.loads(second[2]) == {"n": 2, "body": ""}
    posted, got = recorder.seen
    assert (posted.method, posted.target, posted.body) == ("POST", "/v1/x?a=1", b"hello")
    assert posted.headers == {"host": "h", "x-twice": "one, two", "content-length": "5"}
    assert (got.method, got.target) == ("GET", "/second")


def test_a_chunked_body_is_assembled(server: LocalHttpServer, recorder: Recorder) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"3;ext=1\r\nabc\r\n")
        sock.sendall(b"2\r\nde\r\n0\r\nTrailer: t\r\n\r\n")
        [(status, _, _)] = read_answers(sock, 1)
    assert status.startswith("HTTP/1.1 201")
    assert recorder.seen[0].body == b"abcde"


def test_a_crashing_handler_gets_a_500_naming_it_and_the_connection_lives_on(
    server: LocalHttpServer,
) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /crash HTTP/1.1\r\n\r\nGET /fine HTTP/1.1\r\n\r\n")
        crashed, fine = read_answers(sock, 2)
    assert crashed[0] == "HTTP/1.1 500 Internal Server Error"
    assert "probe crashed: RuntimeError('boom')" in json.loads(crashed[2])["error"]["message"]
    assert fine[0].startswith("HTTP/1.1 201")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"OPTIONS /x HTTP/1.1\r\n\r\n", "HTTP/1.1 501 Not Implemented"),
        (b"GET /x HTTP/2.0\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported"),
    ],
)
def test_an_unreadable_request_is_refused_and_the_connection_closed(
    server: LocalHttpServer, recorder: Recorder, request_bytes: bytes, status: str
) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        [(line, headers, _)] = read_answers(sock, 1)
        assert (line, headers["connection"]) == (status, "close")
        assert closed_by_peer(sock)
    assert recorder.seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /x HTTP/1.0\r\n\r\n",
    ],
)
def test_the_server_closes_when_the_client_does_not_keep_alive(
    server: LocalHttpServer, request_bytes: bytes
) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        read_answers(sock, 1)
        assert closed_by_peer(sock)


def test_a_blocked_handler_holds_only_its_connection_and_stop_cuts_it(
    server: LocalHttpServer, recorder: Recorder
) -> None:
    blocked = connect(server)
    blocked.sendall(b"GET /block HTTP/1.1\r\n\r\n")
    with connect(server) as other:
        other.sendall(b"GET /other HTTP/1.1\r\n\r\n")
        assert read_answers(other, 1)[0][0].startswith("HTTP/1.1 201")
        server.stop()
        assert closed_by_peer(other)  # an idle keep-alive connection is cut
    with blocked:
        assert closed_by_peer(blocked)  # so is one whose handler is still running
    recorder.release.set()


def test_stop_refuses_new_connections(recorder: Recorder) -> None:
    server = LocalHttpServer(recorder).start()
    port = server.port
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
