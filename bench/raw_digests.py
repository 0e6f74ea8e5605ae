"""The digest baseline: the same digest emails rendered in a plain loop and pushed straight at the
same SMTP sink, with no database, queue or bookkeeping.

Each of `processes` processes (the worker's prefork concurrency) takes its share of the subscribers
and, in a plain for loop, renders each one's digest from the same templates and the same content
(relay.digests.building.render: subject, digest.txt and digest.html, with the subscriber's own unsubscribe and
preferences links), composes the same MIME message (relay.render.mail.compose_message: headers, text and HTML
parts) and hands it to a pool of `threads` threads that send it with relay's SMTP client
(relay.providers.smtp_email.SmtpEmailSender: a pool of reused connections), as bench/raw_send.py
does. The processes start, import and connect nothing until `start` is set; the caller times from
then to the last arrival at the sink."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace


def _push(settings, contents, subscribers, now, threads: int, ready, start) -> None:
    from relay.digests.building import render
    from relay.infra.signing import unsubscribe_token
    from relay.model.messages import OutboundMessage
    from relay.providers.smtp_email import SmtpEmailSender
    from relay.render.digest_mail import digest_unsubscribe_url
    from relay.render.mail import compose_message, preferences_url

    sender = SmtpEmailSender(settings)
    daily = SimpleNamespace(frequency="daily")
    domain = settings.email_domain

    def send(message):
        for attempt in range(3):  # as relay would retry a dropped connection
            try:
                return sender.send(message)
            except Exception:
                if attempt == 2:
                    raise

    ready.set()
    start.wait()
    with ThreadPoolExecutor(threads) as pool:
        futures = []
        for sub_id, member_id, address, name, language, content, period in subscribers:
            subject, text, html = render(settings, daily, contents[content], period, language,
                                         digest_unsubscribe_url(settings, sub_id),
                                         preferences_url(settings, member_id) if member_id else None)
            token = unsubscribe_token(settings.secret(), sub_id, "digest")
            urls = (f"{settings.public_base_url}/unsubscribe/{token}",
                    f"mailto:unsubscribe+{token}@{domain}?subject=unsubscribe")
            raw = compose_message(settings, SimpleNamespace(name=name, email=address), settings.network_name, subject, now,
                           f"digest-{sub_id}.{sub_id}@{domain}", [], None, settings.library_url, True, urls,
                           text, html).as_bytes()
            futures.append(pool.submit(send, OutboundMessage(sub_id, "email", address, text, raw=raw)))
        for future in futures:
            future.result()
    sender.close()


def push(settings, contents: list, subscribers: list[tuple], now, processes: int, threads: int) -> float:
    """Render and send one digest per subscriber ((id, member id, address, name, language, index into
    contents, period)); returns the time.time() at which the processes were let go."""
    import time

    context = multiprocessing.get_context("spawn")
    start = context.Event()
    readies = [context.Event() for _ in range(processes)]
    workers = [context.Process(target=_push, args=(settings, contents, subscribers[i::processes], now,
                                                    threads, readies[i], start))
               for i in range(processes)]
    for w in workers:
        w.start()
    for ready in readies:
        if not ready.wait(120):
            raise RuntimeError("a raw digest sender did not start")
    started = time.time()
    start.set()
    for w in workers:
        w.join()
    if any(w.exitcode for w in workers):
        raise RuntimeError("a raw digest sender process failed")
    return started
