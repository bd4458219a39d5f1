"""The e2e bench's tail attribution names the step the slowest messages spent their time in,
and its collection summary counts what a probe log holds per generation."""

from __future__ import annotations

from pathlib import Path

from bench.e2e_stages import MessageTimes, tail_table
from bench.gc_stops import read_log, summary


def _message(posted: float, typing_ms: float) -> MessageTimes:
    at = posted + 0.002
    return MessageTimes(posted, answered=at, logged=at - 0.001, typing=at + typing_ms / 1000,
                        llm_asked=at + typing_ms / 1000, llm_answered=at + typing_ms / 1000,
                        sent=at + typing_ms / 1000 + 0.003, recorded=None)


def test_the_slowest_messages_are_attributed_to_their_longest_step() -> None:
    quick = [_message(i * 0.005, 1.0) for i in range(198)]
    slow = [_message(10.0, 80.0), _message(10.05, 60.0)]  # one stall, one 100 ms window
    table = tail_table([*quick, *slow], fraction=0.01)
    lines = table.splitlines()
    assert lines[0].startswith("slowest 2 of 200 (webhook->send 65.0-85.0 ms)")
    # from "logged" (1 ms before "answered"); nearest-rank p50 of two is the lower one
    queue = next(line for line in lines if line.startswith("replier queue"))
    assert queue.split() == ["replier", "queue", "61.0", "81.0", "2"]
    to_send = next(line for line in lines if line.startswith("to send"))
    assert to_send.split() == ["to", "send", "3.0", "3.0", "0"]
    assert "1 distinct 100 ms windows" in lines[-1]


def test_no_message_sent_says_so() -> None:
    assert tail_table([MessageTimes(1.0)]) == "tail: no message was sent"


def test_a_probe_log_is_summarised_by_generation(tmp_path: Path) -> None:
    log = tmp_path / "gc-1.log"
    log.write_text("argv -m consume replier\n"
                   "100.000 0 5.000 4.000 9000\n100.500 0 2.000 1.000 10\n"
                   "101.000 2 30.000 20.000 3\n")
    name, collections = read_log(log)
    assert name == "-m consume replier"
    assert summary(collections) == (
        "gen0 2 x, CPU 5.0 ms, max 4.0 ms CPU (5.0 wall), freed 9010; "
        "gen2 1 x, CPU 20.0 ms, max 20.0 ms CPU (30.0 wall), freed 3")
    assert summary([]) == "none"
