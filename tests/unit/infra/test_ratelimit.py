"""Provider rate limits shared across processes (relay/infra/ratelimit.py): four real processes sending
through one Redis limit never put more than the limit into any one-second window at the Twilio
stand-in; a 429's Retry-After pauses the sender for everyone."""
from __future__ import annotations

import multiprocessing
import secrets
import time

import pytest
import redis

from relay.infra.ratelimit import (
    _RESERVE,
    LocalRateLimiter,
    Rate,
    RateLimited,
    RedisRateLimiter,
    sender_kind,
    sms_rate,
    smtp_rate,
)
from relay.infra.settings import Settings, SettingsError
from relay.model.messages import OutboundMessage, SendError
from relay.providers.twilio_sms import TwilioSmsSender
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER, make_settings


def _settings(tmp_path, api_url: str, rate: str) -> Settings:
    return make_settings(tmp_path / "var", "sqlite://", twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN,
                         twilio_from=OUR_NUMBER, twilio_api_url=api_url, sms_rate=rate)


class RecordingRedisRateLimiter(RedisRateLimiter):
    """The production limiter whose Lua script also appends each slot it grants (Redis clock, microseconds)
    to a list: the schedule the limiter decided, free of the test machine's scheduling jitter."""

    def __init__(self, client, prefix: str, slots_key: str):
        super().__init__(client, prefix=prefix)
        assert _RESERVE.count("return wait") == 1
        script = _RESERVE.replace("return wait", "redis.call('RPUSH', KEYS[2], string.format('%d', tat))\nreturn wait")
        recording = client.register_script(script)
        self._reserve = lambda keys, args: recording(keys=[*keys, slots_key], args=args)


def _send_many(redis_url: str, prefix: str, api_url: str, var_dir: str, count: int, start_at: float) -> None:
    """One worker process: its own limiter and Twilio client, sending `count` messages."""
    from pathlib import Path

    settings = make_settings(Path(var_dir), "sqlite://", twilio_account_sid=ACCOUNT_SID,
                             twilio_auth_token=AUTH_TOKEN, twilio_from=OUR_NUMBER, twilio_api_url=api_url,
                             sms_rate="10")
    limiter = RecordingRedisRateLimiter(redis.Redis.from_url(redis_url), prefix, f"{prefix}slots")
    sender = TwilioSmsSender(settings, limiter=limiter)
    time.sleep(max(0.0, start_at - time.time()))  # all four start together
    for i in range(count):
        sender.send(OutboundMessage(i, "sms", f"+1202555{i:04d}", "paced"))


def _max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + 1.0))
    return best


@pytest.mark.e2e
def test_four_processes_never_exceed_ten_a_second_at_the_provider(redis_url, twilio_standin, tmp_path):
    """The slots the shared limiter grants (on Redis's clock) never put more than 10 into any second. At the
    stand-in each arrival also carries the machine's scheduling delay: the 5 % margin absorbs up to 50 ms of
    it, and a suite loading both cores can delay one send by more, so there one extra arrival is tolerated,
    and the pace over the whole run must still be the limit's."""
    prefix = f"test-rate-{secrets.token_hex(4)}:"
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    workers = [context.Process(target=_send_many, args=(redis_url, prefix, twilio_standin.url, str(tmp_path / "var"),
                                                        12, start_at)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    client = redis.Redis.from_url(redis_url)
    slots = [int(s) / 1e6 for s in client.lrange(f"{prefix}slots", 0, -1)]
    client.delete(f"{prefix}slots")
    assert len(slots) == 48
    assert _max_in_any_second(slots) <= 10
    arrivals = [r.at for r in twilio_standin.accepted]
    assert len(arrivals) == 48
    assert _max_in_any_second(arrivals) <= 11
    # and the limit is what paced them: 48 messages at 10/s take at least 4.7 s
    assert max(arrivals) - min(arrivals) >= 4.5 and max(slots) - min(slots) >= 4.7


def test_without_the_shared_limit_the_same_processes_go_faster(twilio_standin, tmp_path):
    """The control for the test above: unpaced, one process alone puts far more than 10 into a second."""
    sender = TwilioSmsSender(_settings(tmp_path, twilio_standin.url, "0"))
    for i in range(30):
        sender.send(OutboundMessage(i, "sms", f"+1202555{i:04d}", "unpaced"))
    assert _max_in_any_second([r.at for r in twilio_standin.accepted]) > 10


def test_retry_after_of_a_429_is_kept_and_pauses_the_sender_for_everyone(redis_url, twilio_standin, tmp_path):
    prefix = f"test-rate-{secrets.token_hex(4)}:"
    limiter = RedisRateLimiter.from_url(redis_url, prefix=prefix)
    sender = TwilioSmsSender(_settings(tmp_path, twilio_standin.url, "100"), limiter=limiter)
    twilio_standin.fail_next(429, 20429, "Too Many Requests")  # the stand-in answers Retry-After: 1
    with pytest.raises(SendError) as caught:
        sender.send(OutboundMessage(1, "sms", "+12025550100", "x"))
    assert caught.value.retryable and caught.value.code == "20429" and caught.value.retry_after == 1.0
    # another process's limiter on the same Redis now waits out the pause
    other = RedisRateLimiter.from_url(redis_url, prefix=prefix)
    assert 0.8 < other.reserve(sender.rate_key, sender.rate) <= 1.05


def test_a_slot_beyond_the_longest_wait_is_not_reserved(redis_url):
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url), prefix=f"test-rate-{secrets.token_hex(4)}:",
                               max_wait=1.0)
    rate = Rate(2, margin=0)  # one slot every 0.5 s
    waits = [limiter.reserve("k", rate) for _ in range(3)]
    assert waits[0] == 0 and 0.4 < waits[1] <= 0.5 and 0.9 < waits[2] <= 1.0
    with pytest.raises(RateLimited) as caught:
        limiter.reserve("k", rate)
    assert 1.3 < caught.value.retry_after <= 1.5
    # nothing was reserved by the refused call: the next caller is told the same
    with pytest.raises(RateLimited):
        limiter.reserve("k", rate)


def test_local_limiter_spaces_calls_in_one_process():
    limiter = LocalRateLimiter()
    rate = Rate(20, margin=0)
    started = time.monotonic()
    for _ in range(6):
        limiter.acquire("k", rate)
    assert time.monotonic() - started >= 0.24


@pytest.mark.parametrize("setting, sender, expected", [
    ("auto", "+14155550100", 1.0), ("auto", "+18005550100", 3.0), ("auto", "12345", 100.0),
    ("auto", "MG" + "1" * 32, None), ("toll_free", "+14155550100", 3.0), ("25", "+14155550100", 25.0),
    ("0", "+14155550100", None)])
def test_sms_rate_by_sender_kind_or_setting(setting, sender, expected):
    rate = sms_rate(setting, sender)
    assert (rate.count if rate else None) == expected


def test_rate_settings_from_env():
    settings = Settings.from_env({"RELAY_SMS_RATE": "short_code", "RELAY_SMTP_RATE": "600"})
    assert settings.sms_rate == "short_code" and smtp_rate(settings.smtp_rate).interval == pytest.approx(0.105)
    assert Settings.from_env({}).sms_rate == "auto" and smtp_rate(Settings.from_env({}).smtp_rate) is None
    assert sender_kind("+18885550100") == "toll_free"
    with pytest.raises(SettingsError, match="RELAY_SMS_RATE"):
        Settings.from_env({"RELAY_SMS_RATE": "fast"})
