"""The machine's limit for a fan-out: the best raw clients we know, in one process and one event loop
(uvloop when installed), pushing pre-built messages at the same stand-ins with no database, queue or
rendering:

- SMS: aiohttp posting Twilio Messages.json forms (the same fields relay sends: To, StatusCallback,
  From, Body; HTTP Basic auth) over SMS_IN_FLIGHT kept-alive connections, each answer read and its
  JSON parsed (the sid), as a real client must;
- email: aiosmtplib over SMTP_CONNECTIONS reused connections, a pre-built ~2 KB message each.

Both channels at once when both are asked for, interleaved as a notice's are. Concurrency was tuned once
on this kind of machine (docs/scale.md, "the raw limit"): aiohttp 8 / 16 / 32 / 64 in flight, 32 best;
aiosmtplib 1 / 4 / 8 / 16 connections, 8 best (16 no better, the sink is then the limit). Override with
BENCH_RAW_SMS_IN_FLIGHT and BENCH_RAW_SMTP_CONNECTIONS to tune again.

Also measured: the client process's CPU time (user + system), so the bench can report CPU milliseconds
per message of the raw clients beside relay's workers'."""
from __future__ import annotations

import asyncio
import base64
import json
import multiprocessing
import os
import resource
from urllib.parse import urlencode

SMS_IN_FLIGHT = int(os.environ.get("BENCH_RAW_SMS_IN_FLIGHT", "32"))
SMTP_CONNECTIONS = int(os.environ.get("BENCH_RAW_SMTP_CONNECTIONS", "8"))


async def _push(twilio_url: str, account: str, token: str, sender: str, callback: str, smtp_host: str,
                smtp_port: int, sms: int, emails: int, raw: bytes, mail_from: str) -> None:
    import aiohttp
    import aiosmtplib

    url = f"{twilio_url}/2010-04-01/Accounts/{account}/Messages.json"
    headers = {"Authorization": "Basic " + base64.b64encode(f"{account}:{token}".encode()).decode(),
               "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    body = "relay: new case C1 Fever and cough https://relay.example.org/library/cases/C1"
    sms_numbers = iter(range(sms))
    email_numbers = iter(range(emails))

    async def sms_lane(session) -> None:
        for i in sms_numbers:
            form = urlencode({"To": f"+1303{i:07d}", "StatusCallback": callback, "From": sender, "Body": body})
            for attempt in range(3):
                try:
                    async with session.post(url, data=form.encode(), headers=headers) as response:
                        answer = json.loads(await response.read())
                        if response.status != 201 or not answer.get("sid"):
                            raise RuntimeError(f"stand-in said {response.status}")
                        break
                except aiohttp.ClientError:
                    if attempt == 2:
                        raise

    async def smtp_lane() -> None:
        smtp = aiosmtplib.SMTP(hostname=smtp_host, port=smtp_port, start_tls=False, timeout=30)
        await smtp.connect()
        for i in email_numbers:
            await smtp.sendmail(mail_from, [f"raw{i}@bench.example"], raw)
        await smtp.quit()

    lanes = []
    connector = aiohttp.TCPConnector(limit=SMS_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:
        if sms:
            lanes += [sms_lane(session) for _ in range(SMS_IN_FLIGHT)]
        if emails:
            lanes += [smtp_lane() for _ in range(SMTP_CONNECTIONS)]
        await asyncio.gather(*lanes)


def _run(args: tuple, out) -> None:
    from bench.twilio_async import new_event_loop

    loop = new_event_loop()
    before = resource.getrusage(resource.RUSAGE_SELF)
    loop.run_until_complete(_push(*args))
    after = resource.getrusage(resource.RUSAGE_SELF)
    loop.close()
    out.send((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def push(settings, sms: int, emails: int, raw: bytes) -> float:
    """Push sms + emails raw from a fresh process; returns its CPU seconds while sending."""
    from relay.providers.smtp_email import parse_smtp_url

    target = parse_smtp_url(settings.smtp_url)
    args = (settings.twilio_api_url, settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from,
            f"{settings.public_base_url}/webhooks/twilio/status", target.hostname, target.port, sms, emails, raw,
            settings.email_from)
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_run, args=(args, send))
    process.start()
    while not receive.poll(0.5):
        if not process.is_alive():
            raise RuntimeError(f"the raw client process failed (exit code {process.exitcode})")
    cpu = receive.recv()
    process.join()
    return cpu
