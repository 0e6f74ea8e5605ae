"""The fan-out baseline: the same number of SMS and emails pushed straight at the same stand-ins,
with relay's own provider clients (twilio's client with a session per thread, aiosmtplib over a
pool of reused connections) and the same concurrency as the workers (processes x threads), but no
database, queue or rendering: pre-built messages only."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor

from relay.model.messages import OutboundMessage


def _push(settings, sms: int, emails: int, threads: int, raw: bytes) -> None:
    from relay.providers.smtp_email import SmtpEmailSender
    from relay.providers.twilio_sms import TwilioSmsSender

    senders = {"sms": TwilioSmsSender(settings), "email": SmtpEmailSender(settings)}
    messages = []
    for i in range(max(sms, emails)):  # interleaved, as a notice's batches are
        if i < sms:
            messages.append(OutboundMessage(i, "sms", f"+1303{i:07d}", "relay: new case C1 Fever and cough "
                                                                       "https://relay.example.org/library/cases/C1"))
        if i < emails:
            messages.append(OutboundMessage(i, "email", f"raw{i}@bench.example", "", raw=raw))
    def send(message):
        for attempt in range(3):  # as relay would retry a dropped connection
            try:
                return senders[message.channel].send(message)
            except Exception:
                if attempt == 2:
                    raise

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(send, messages))
    senders["email"].close()


def push(settings, sms: int, emails: int, processes: int, threads: int, raw: bytes) -> None:
    """Send sms + emails split over `processes` processes of `threads` threads each; returns when done."""
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_push, args=(settings, sms // processes + (i < sms % processes),
                                                   emails // processes + (i < emails % processes), threads, raw))
               for i in range(processes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if any(w.exitcode for w in workers):
        raise RuntimeError("a raw sender process failed")
