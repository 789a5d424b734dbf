"""The recording worker's answers (proxy/worker_process.py's Answers), over a real socket pair."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from proxy.pipeline import Pipeline, PipelineConfig, SinkStats, Written
from proxy.recording import Redaction
from proxy.worker_process import ANSWERS_AT_ONCE, Answers
from proxy.worker_wire import FRAME_LENGTH, Message, frame


class CountingSink:
    """A sink whose counters say how often they were read."""

    def __init__(self) -> None:
        self.reads = 0

    def submit(self, interaction: object, cassette_path: str | None) -> None:
        raise AssertionError("not used here")

    def stats(self) -> SinkStats:
        self.reads += 1
        return SinkStats("counting", rows_written=self.reads)

    def close(self) -> SinkStats:
        return self.stats()


@contextmanager
def worker_end() -> Iterator[tuple[Answers, socket.socket, socket.socket]]:
    """Answers on the worker's end of a socket pair; the proxy's end, and the worker's socket."""
    proxy_end, worker_sock = socket.socketpair()
    pipeline = Pipeline(PipelineConfig(Redaction(), (CountingSink,)))
    pipeline.open()
    try:
        yield Answers(worker_sock, pipeline), proxy_end, worker_sock
    finally:
        proxy_end.close()
        worker_sock.close()


def received(sock: socket.socket) -> list[Message]:
    """Every message that has arrived, without waiting for more."""
    sock.setblocking(False)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except BlockingIOError:
        pass
    messages = []
    while data:
        (length,) = FRAME_LENGTH.unpack(data[: FRAME_LENGTH.size])
        messages.append(pickle.loads(data[FRAME_LENGTH.size : FRAME_LENGTH.size + length]))
        data = data[FRAME_LENGTH.size + length :]
    return messages


def results(seq: int) -> list[Written]:
    return [Written(Path("cassettes"), f"{seq}.json", None, None)]


def test_an_answer_goes_at_once_when_no_other_batch_waits() -> None:
    with worker_end() as (answers, proxy_end, _):
        answers.done(1, results(1))
        answers.send_if_due()
        [(kind, seq, (written, stats))] = received(proxy_end)
        assert (kind, seq, written[0].cassette) == ("done", 1, "1.json")
        assert stats == (SinkStats("counting", rows_written=1),)


def test_answers_wait_while_the_next_batch_is_there_then_go_together_with_one_set_of_counters() -> None:
    with worker_end() as (answers, proxy_end, worker_sock):
        proxy_end.sendall(frame(("batch", 2, b"")))  # the next batch, unread yet
        answers.done(1, results(1))
        answers.send_if_due()
        assert received(proxy_end) == []
        worker_sock.recv(1 << 16)  # the worker reads it: nothing waits any more
        answers.done(2, results(2))
        answers.send_if_due()
        messages = received(proxy_end)
        assert [(kind, seq, body[0][0].cassette) for kind, seq, body in messages] == [
            ("done", 1, "1.json"),
            ("done", 2, "2.json"),
        ]
        assert [body[1] for _, _, body in messages] == [None, (SinkStats("counting", rows_written=1),)]


def test_answers_do_not_wait_for_ever_behind_a_long_backlog() -> None:
    with worker_end() as (answers, proxy_end, _):
        proxy_end.sendall(frame(("batch", 99, b"")))  # always something left to read
        for seq in range(1, ANSWERS_AT_ONCE + 1):
            answers.done(seq, results(seq))
            answers.send_if_due()
        assert [seq for _, seq, _ in received(proxy_end)] == list(range(1, ANSWERS_AT_ONCE + 1))


def test_a_question_is_answered_after_the_batches_that_came_before_it() -> None:
    with worker_end() as (answers, proxy_end, _):
        proxy_end.sendall(frame(("stats", -1, None)))
        answers.done(1, results(1))
        answers.send_if_due()
        answers.send(("stats", -1, answers.pipeline.stats()))
        assert [(kind, seq) for kind, seq, _ in received(proxy_end)] == [("done", 1), ("stats", -1)]
