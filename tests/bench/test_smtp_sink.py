"""The benchmark's lean SMTP sink (bench/smtp_sink.py) receives what aiosmtpd (the tests' SMTP server,
tests/standins/smtp_sink.py) receives — the same envelopes and bytes from relay's sender and the raw-limit
client — and answers a conversation with aiosmtpd's reply codes, however the bytes are split."""
from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
import time

import pytest
import requests

from bench.smtp_sink import LeanSmtpSink
from relay.infra.settings import Settings
from relay.model.messages import OutboundMessage
from relay.providers.smtp_email import SmtpEmailSender
from tests.conftest import PUBLIC_BASE
from tests.standins.smtp_sink import SmtpSink

MESSAGES = [
    b"From: cases@relay.example.org\r\nTo: a@example.org\r\nSubject: C1\r\n\r\nA new case.\r\n",
    b"From: cases@relay.example.org\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n.starts with a dot\r\n"
    b"..two\r\n.\r\nend\r\n",  # a line that is only "." must not end the message early
    "From: cases@relay.example.org\r\nTo: c@example.org\r\nSubject: =?utf-8?b?7ZWc6rWt?=\r\n\r\n"
    "흉부 영상 소견입니다.\r\n".encode(),  # an 8bit body (BODY=8BITMIME)
]


@pytest.fixture
def sinks():
    theirs, ours = SmtpSink().start(), LeanSmtpSink().start()
    yield theirs, ours
    theirs.stop()
    ours.stop()


def test_relays_sender_delivers_the_same_envelopes_and_bytes_to_both(tmp_path, sinks):
    for url in (sinks[0].url, f"smtp://127.0.0.1:{sinks[1].port}"):
        settings = Settings(var_dir=tmp_path, public_base_url=PUBLIC_BASE, smtp_url=url,
                            mail_from="cases@relay.example.org")
        sender = SmtpEmailSender(settings)
        try:
            for i, raw in enumerate(MESSAGES):
                sender.send(OutboundMessage(100 + i, "email", f"member{i}@example.org", "", raw=raw))
        finally:
            sender.close()
    theirs = [(r.mail_from, r.rcpt_tos, r.data) for r in sinks[0].received]
    ours = [(e.mail_from, e.rcpt_tos, e.data) for e in sinks[1].received]
    assert len(theirs) == len(MESSAGES) and ours == theirs
    assert sinks[1].count == len(MESSAGES)
    assert ours[1][2].endswith(MESSAGES[1].partition(b"\r\n\r\n")[2])  # dot-stuffed on the wire, unstuffed here


SCRIPT = [
    b"MAIL FROM:<a@example.org>",  # before EHLO
    b"EHLO client.example",
    b"RCPT TO:<b@example.org>",  # before MAIL
    b"DATA",  # before RCPT
    b"MAIL FROM:a@example.org",  # no angle brackets: taken, as aiosmtpd takes it
    b"RSET",
    b"MAIL FROM: <>",  # no argument at all
    b"MAIL FROM:<a@example.org> BODY=8BITMIME",
    b"MAIL FROM:<again@example.org>",  # nested
    b"RCPT TO:<b@example.org>",
    b"NOOP",
    b"FROB",
    b"RSET",
    b"DATA",  # the reset forgot the recipients
    b"HELO client.example",
    b"MAIL FROM:<a@example.org>",
    b"RCPT TO:<b@example.org>",
    b"DATA",
    b"hello\r\n.",
    b"QUIT",
]


def _converse(port: int, chunks) -> list[bytes]:
    """Send each command and read its reply; the reply codes in order."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        codes = [reader.readline()[:3]]
        for command in chunks:
            sock.sendall(command + b"\r\n")
            line = reader.readline()
            while line[3:4] == b"-":  # a multi-line reply (EHLO)
                line = reader.readline()
            codes.append(line[:3])
        return codes


def test_it_answers_a_conversation_with_aiosmtpds_reply_codes(sinks):
    theirs = _converse(sinks[0].port, SCRIPT)
    ours = _converse(sinks[1].port, SCRIPT)
    assert ours == theirs
    assert theirs[1:4] == [b"503", b"250", b"503"] and theirs[-2:] == [b"250", b"221"]
    assert [e.data for e in sinks[1].received] == [b"hello\r\n"]


def test_pipelined_commands_and_bytes_split_anywhere_make_one_message_each():
    sink = LeanSmtpSink().start()
    try:
        body = b"Subject: x\r\n\r\nline\r\n..dot\r\n"
        session = (b"EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nRCPT TO:<c@x.example>\r\nDATA\r\n"
                   + body + b".\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<d@x.example>\r\nDATA\r\n.\r\nQUIT\r\n")
        with socket.create_connection(("127.0.0.1", sink.port), timeout=5) as sock:
            sock.recv(100)
            for i in range(len(session)):  # one byte at a time: every split point, the end marker's too
                sock.sendall(session[i:i + 1])
            replies = b""
            while not replies.endswith(b"221 Bye\r\n"):
                chunk = sock.recv(1000)
                assert chunk, replies
                replies += chunk
        assert [(e.mail_from, e.rcpt_tos, e.data) for e in sink.received] == [
            ("a@x.example", ["b@x.example", "c@x.example"], b"Subject: x\r\n\r\nline\r\n.dot\r\n"),
            ("a@x.example", ["d@x.example"], b"")]
        assert replies.count(b"250 Message accepted") == 2
    finally:
        sink.stop()


def test_the_stand_in_process_counts_what_it_accepts():
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    port, stats = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.standins", "smtp", "--port", str(port),
                                "--stats-port", str(stats)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{stats}/stats", timeout=1).json()["count"] == 0
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the sink process did not start"
                time.sleep(0.1)
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            for raw in MESSAGES[:2]:
                client.sendmail("cases@relay.example.org", ["a@example.org"], raw)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # cut off mid-message: not counted
            sock.recv(100)
            sock.sendall(b"HELO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nSubject: half\r\n")
        counted = requests.get(f"http://127.0.0.1:{stats}/stats", timeout=5).json()
        assert counted["count"] == 2 and counted["first"] <= counted["last"]
    finally:
        process.terminate()
        process.wait(10)
