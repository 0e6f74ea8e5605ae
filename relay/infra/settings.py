"""Settings, read once from the environment (every name starts with RELAY_; see config/settings.md)."""
from __future__ import annotations

import ipaddress
import math
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # relay/infra/settings.py -> the project


class SettingsError(ValueError):
    """A setting has a value relay cannot use; the message names the variable."""


DEV_ACCOUNT_SID = "AC" + "0" * 32  # the account of the dev outbox mode (`relay demo` signs with it)


def parse_duration(text: str, name: str = "duration") -> timedelta:
    """Parse '72h', '30m', '45s', '7d' or a bare number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not match:
        raise SettingsError(f"{name}: expected a duration like 72h, 30m, 45s or 7d, got {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return timedelta(seconds=value * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def parse_sweep_every(text: str) -> timedelta:
    """RELAY_SWEEP_EVERY: 1 s to 10 min (beat's period for the sweeper); empty means 30 s."""
    every = parse_duration(text or "30s", "RELAY_SWEEP_EVERY")
    if not timedelta(seconds=1) <= every <= timedelta(minutes=10):
        raise SettingsError(f"RELAY_SWEEP_EVERY: expected a duration from 1s to 10m, got {text!r}")
    return every


def parse_int(text: str, name: str, default: int, minimum: int = 0) -> int:
    """An integer setting; empty means the default."""
    text = (text or "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise SettingsError(f"{name}: expected a whole number of at least {minimum}, got {text!r}")
    return int(text)


def parse_bool(text: str, name: str) -> bool | None:
    """true/false, yes/no, on/off, 1/0; empty means "not set" (None)."""
    text = (text or "").strip().lower()
    if not text:
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {text!r}")


def parse_quiet_hours(text: str, name: str = "RELAY_QUIET_HOURS") -> str:
    """'22:00-07:00' (local start-end, may cross midnight) or 'off'."""
    text = (text or "").strip().lower()
    if text in ("off", "none"):
        return "off"
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)", text)
    if not match:
        raise SettingsError(f"{name}: expected quiet hours like 22:00-07:00 or off, got {text!r}")
    a, b, c, d = match.groups()
    return f"{int(a):02d}:{b}-{int(c):02d}:{d}"


GUARD_MODES = ("hold", "warn", "off")


def parse_guard_mode(text: str, name: str = "RELAY_GUARD") -> str:
    """hold (a message with a patient identifier waits for its author), warn (relayed, the author told) or off."""
    value = (text or "").strip().lower()
    if value not in GUARD_MODES:
        raise SettingsError(f"{name}: expected hold, warn or off, got {text!r}")
    return value


def parse_sms_rate(text: str) -> str:
    """RELAY_SMS_RATE: auto, long_code, toll_free, short_code, messaging_service or messages per second."""
    value = text.strip().lower()
    if value in ("auto", "long_code", "toll_free", "short_code", "messaging_service"):
        return value
    try:
        if float(value) >= 0:
            return value
    except ValueError:
        pass
    raise SettingsError("RELAY_SMS_RATE: expected auto, long_code, toll_free, short_code, messaging_service "
                        f"or a number of messages per second, got {text!r}")


def parse_whatsapp_rate(text: str, name: str = "RELAY_WHATSAPP_RATE") -> str:
    """RELAY_WHATSAPP_RATE: auto, or messages per second (a finite number, 0 for no relay-side limit)."""
    value = text.strip().lower()
    if value == "auto":
        return value
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if math.isfinite(number) and number >= 0:
        return value
    raise SettingsError(f"{name}: expected auto or a number of messages per second (e.g. 80; 0 for no limit), "
                        f"got {text!r}")


def parse_share(text: str, name: str, default: float) -> float:
    """A fraction between 0 and 1 (0.5 or 50%); empty means the default."""
    text = (text or "").strip()
    if not text:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(%?)", text)
    value = float(match.group(1)) / (100 if match.group(2) else 1) if match else -1.0
    if not 0 <= value <= 1:
        raise SettingsError(f"{name}: expected a share between 0 and 1 (like 0.5 or 50%), got {text!r}")
    return value


def parse_trusted_proxies(text: str, name: str = "RELAY_TRUSTED_PROXIES") -> tuple[str, ...]:
    """Comma-separated addresses or networks (10.0.0.0/8, ::1), or one whole number of hops.

    Returned as given (normalised): webhooks/proxies.py builds the networks; a bad entry names the variable."""
    entries = _split(text)
    if len(entries) == 1 and entries[0].isascii() and entries[0].isdigit():
        if int(entries[0]) < 1:
            raise SettingsError(f"{name}: a hop count must be at least 1, got {text!r}")
        return (str(int(entries[0])),)
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise SettingsError(f"{name}: expected addresses or networks like 10.0.0.0/8 or 127.0.0.1, "
                                f"or one number of hops, got {entry!r}") from None
    return tuple(networks)


def parse_whatsapp_from(text: str, name: str = "RELAY_TWILIO_WHATSAPP_FROM") -> str:
    """`whatsapp:+E164` (a bare `+E164` gets the prefix) or a Messaging Service SID `MG…`; '' stays off."""
    text = text.strip()
    if not text or text.startswith("MG"):
        return text
    number = text[len("whatsapp:"):] if text.startswith("whatsapp:") else text
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", number):
        raise SettingsError(f"{name}={text!r}: expected whatsapp:+<E.164 number> (e.g. whatsapp:+14155550100) "
                            "or a Messaging Service SID (MG...)")
    return f"whatsapp:{number}"


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    """Everything relay can be configured with. Defaults give the embedded single-machine mode."""

    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""
    broker_url: str = ""
    broker_prefix: str = ""
    public_base_url: str = ""
    port: int = 8000
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""
    twilio_api_url: str = ""
    twilio_numbers: tuple[str, ...] = ()
    # issue 19: WhatsApp through Twilio. The sender (`whatsapp:+…`, or a Messaging Service `MG…`); empty:
    # the channel is off. Templates (Content API ContentSid per message kind and language) for messages
    # outside the 24-hour window, and the estimated price of one template message per country.
    whatsapp_from: str = ""
    # Messages a second from the WhatsApp sender, across every worker: auto = Twilio's default 80 for a number,
    # none for a Messaging Service (its pool is Twilio's); a number once Twilio has approved a higher one.
    whatsapp_rate: str = "auto"
    whatsapp_templates: Path = PROJECT_ROOT / "config" / "whatsapp_templates.json"
    whatsapp_prices: Path = PROJECT_ROOT / "config" / "whatsapp_prices.csv"
    reply_window: timedelta = timedelta(hours=72)
    ambiguity_window: timedelta = timedelta(minutes=10)
    max_send_attempts: int = 6
    send_lease: timedelta = timedelta(seconds=120)
    pause_failure_share: float = 0.5
    pause_min_failures: int = 20
    relay_max_age: timedelta = timedelta(hours=6)
    max_defer_hours: int = 48  # a delivery still waiting for a rate-limit slot this long after it was queued fails
    inbound_per_minute: int = 20
    network_name: str = "relay"
    templates_dir: Path = PROJECT_ROOT / "templates"
    max_webhook_bytes: int = 64 * 1024
    max_email_bytes: int = 25 * 1024 * 1024
    secret_key: str = ""
    smtp_url: str = ""
    mail_from: str = ""
    mail_domain: str = ""
    mailgun_signing_key: str = ""
    mailgun_max_age: int = 300
    sendgrid_secret: str = ""
    postmark_user: str = ""
    postmark_password: str = ""
    hard_bounce_limit: int = 3
    api_token: str = ""
    preview_rate_limit: str = "60/minute"
    sms_prices: Path = PROJECT_ROOT / "config" / "sms_prices.csv"
    media_dir: str = ""  # empty: <var_dir>/media
    max_image_bytes: int = 10 * 1024 * 1024
    media_fetch_attempts: int = 6
    image_max_pixels: int = 40_000_000  # relay.library.images.MAX_PIXELS: larger is refused before decoding
    raw_retention: timedelta = timedelta(days=30)  # raw inbound bodies are emptied after this (0: kept)
    intake_address: str = ""
    # issue 13: an email that does not prove its sender waits this long for the member's confirmation
    email_confirm_window: timedelta = timedelta(hours=48)
    email_trusted_authserv_ids: tuple[str, ...] = ()  # Authentication-Results from these servers count
    # Console and library sign-in (webhooks/auth.py). None: Secure unless the public base is http://.
    session_cookie_secure: bool | None = None
    session_idle_timeout: timedelta = timedelta(minutes=30)
    signin_rate_limit: str = "10/minute;50/hour"
    quiet_hours: str = "22:00-07:00"  # issue 5: members' default quiet hours, local; "off" for none
    sms_rate: str = "auto"
    smtp_rate: int = 0
    rate_limit_url: str = ""
    send_concurrency: int = 16
    bulk_batch_size: int = 250  # issue 18: deliveries per bulk task (relay/outbound/queueing.py batch_size)
    send_async: bool = True  # issue 18: bulk sends from an event loop (relay/outbound/async_batch.py)
    # The spool for webhooks the database could not take (relay/infra/spool.py). Empty dir: <var_dir>/spool.
    spool_dir: str = ""
    spool_max_bytes: int = 64 * 1024 * 1024
    spool_max_files: int = 20000
    # issue 13: the dev outbox page only when asked for (and never on an https base), behind an admin sign-in
    dev_outbox: bool = False
    # issue 13: X-Forwarded-For is believed only from these peers (webhooks/proxies.py); empty: from none
    trusted_proxies: tuple[str, ...] = ()
    signin_account_limit: str = "10/15 minutes"  # failed sign-ins per account, whatever the address
    metrics_token: str = ""  # when set, /metrics needs "Authorization: Bearer <token>"
    metrics_cache_seconds: int = 5
    # issue 16: the patient-information guard (relay/guard/, docs/guard.md): hold | warn | off, and how long a
    # held message waits for its author's SEND/DROP before it is dropped
    guard: str = "hold"
    guard_hold_for: timedelta = timedelta(hours=24)
    # issue 17: a notice's acknowledgement window when asked without one, and each later escalation step
    ack_window: timedelta = timedelta(minutes=30)
    escalation_step: timedelta = timedelta(minutes=15)
    # how often beat runs the sweeper and the scheduled-notice check; the escalation ladder and the
    # recovery of anything the broker lost move at this pace
    sweep_every: timedelta = timedelta(seconds=30)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)

        def get(name: str, default: str = "") -> str:
            return env.get(f"RELAY_{name}", default).strip()

        var_dir = Path(get("VAR_DIR") or cls.var_dir)
        settings = cls(
            var_dir=var_dir,
            database_url=get("DATABASE_URL"),
            broker_url=get("BROKER_URL"),
            broker_prefix=get("BROKER_PREFIX"),
            public_base_url=get("PUBLIC_BASE_URL").rstrip("/"),
            port=parse_int(get("PORT"), "RELAY_PORT", cls.port, minimum=1),
            twilio_account_sid=get("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
            twilio_from=get("TWILIO_FROM"),
            twilio_api_url=get("TWILIO_API_URL").rstrip("/"),
            twilio_numbers=_split(get("TWILIO_NUMBERS")),
            whatsapp_from=parse_whatsapp_from(get("TWILIO_WHATSAPP_FROM")),
            whatsapp_rate=parse_whatsapp_rate(get("WHATSAPP_RATE") or cls.whatsapp_rate),
            whatsapp_templates=Path(get("WHATSAPP_TEMPLATES") or cls.whatsapp_templates),
            whatsapp_prices=Path(get("WHATSAPP_PRICES") or cls.whatsapp_prices),
            reply_window=parse_duration(get("REPLY_WINDOW") or "72h", "RELAY_REPLY_WINDOW"),
            ambiguity_window=parse_duration(get("AMBIGUITY_WINDOW") or "10m", "RELAY_AMBIGUITY_WINDOW"),
            max_send_attempts=parse_int(get("MAX_SEND_ATTEMPTS"), "RELAY_MAX_SEND_ATTEMPTS", cls.max_send_attempts,
                                        minimum=1),
            send_lease=parse_duration(get("SEND_LEASE") or "120s", "RELAY_SEND_LEASE"),
            inbound_per_minute=parse_int(get("INBOUND_PER_MINUTE"), "RELAY_INBOUND_PER_MINUTE", cls.inbound_per_minute,
                                         minimum=1),
            relay_max_age=parse_duration(get("RELAY_MAX_AGE") or "6h", "RELAY_RELAY_MAX_AGE"),
            max_defer_hours=parse_int(get("MAX_DEFER_HOURS"), "RELAY_MAX_DEFER_HOURS", cls.max_defer_hours, minimum=1),
            pause_failure_share=parse_share(get("PAUSE_FAILURE_SHARE"), "RELAY_PAUSE_FAILURE_SHARE",
                                            cls.pause_failure_share),
            pause_min_failures=parse_int(get("PAUSE_MIN_FAILURES"), "RELAY_PAUSE_MIN_FAILURES", cls.pause_min_failures,
                                         minimum=1),
            network_name=get("NETWORK_NAME") or cls.network_name,
            templates_dir=Path(get("TEMPLATES_DIR") or cls.templates_dir),
            max_webhook_bytes=parse_int(get("MAX_WEBHOOK_BYTES"), "RELAY_MAX_WEBHOOK_BYTES", cls.max_webhook_bytes,
                                        minimum=4096),
            max_email_bytes=parse_int(get("MAX_EMAIL_BYTES"), "RELAY_MAX_EMAIL_BYTES", cls.max_email_bytes,
                                      minimum=65536),
            secret_key=get("SECRET_KEY"),
            smtp_url=get("SMTP_URL"),
            mail_from=get("MAIL_FROM"),
            mail_domain=get("MAIL_DOMAIN").lower(),
            mailgun_signing_key=get("MAILGUN_SIGNING_KEY"),
            mailgun_max_age=parse_int(get("MAILGUN_MAX_AGE"), "RELAY_MAILGUN_MAX_AGE", cls.mailgun_max_age,
                                      minimum=10),
            sendgrid_secret=get("SENDGRID_SECRET"),
            postmark_user=get("POSTMARK_USER"),
            postmark_password=get("POSTMARK_PASSWORD"),
            api_token=get("API_TOKEN"),
            preview_rate_limit=get("PREVIEW_RATE_LIMIT") or cls.preview_rate_limit,
            sms_prices=Path(get("SMS_PRICES") or cls.sms_prices),
            media_dir=get("MEDIA_DIR"),
            max_image_bytes=parse_int(get("MAX_IMAGE_BYTES"), "RELAY_MAX_IMAGE_BYTES", cls.max_image_bytes,
                                      minimum=1024),
            media_fetch_attempts=parse_int(get("MEDIA_FETCH_ATTEMPTS"), "RELAY_MEDIA_FETCH_ATTEMPTS",
                                           cls.media_fetch_attempts, minimum=1),
            image_max_pixels=parse_int(get("IMAGE_MAX_PIXELS"), "RELAY_IMAGE_MAX_PIXELS", cls.image_max_pixels,
                                       minimum=1_000_000),
            raw_retention=parse_duration(get("RAW_RETENTION") or "30d", "RELAY_RAW_RETENTION"),
            intake_address=get("INTAKE_ADDRESS").lower(),
            email_confirm_window=parse_duration(get("EMAIL_CONFIRM_WINDOW") or "48h", "RELAY_EMAIL_CONFIRM_WINDOW"),
            email_trusted_authserv_ids=tuple(i.lower() for i in _split(get("EMAIL_TRUSTED_AUTHSERV_IDS"))),
            session_cookie_secure=parse_bool(get("SESSION_COOKIE_SECURE"), "RELAY_SESSION_COOKIE_SECURE"),
            session_idle_timeout=parse_duration(get("SESSION_IDLE_TIMEOUT") or "30m", "RELAY_SESSION_IDLE_TIMEOUT"),
            signin_rate_limit=get("SIGNIN_RATE_LIMIT") or cls.signin_rate_limit,
            quiet_hours=parse_quiet_hours(get("QUIET_HOURS") or cls.quiet_hours),
            hard_bounce_limit=parse_int(get("HARD_BOUNCE_LIMIT"), "RELAY_HARD_BOUNCE_LIMIT", cls.hard_bounce_limit,
                                        minimum=1),
            sms_rate=parse_sms_rate(get("SMS_RATE") or cls.sms_rate),
            smtp_rate=parse_int(get("SMTP_RATE"), "RELAY_SMTP_RATE", cls.smtp_rate),
            rate_limit_url=get("RATE_LIMIT_URL"),
            send_concurrency=parse_int(get("SEND_CONCURRENCY"), "RELAY_SEND_CONCURRENCY", cls.send_concurrency,
                                       minimum=1),
            send_async=parse_bool(get("SEND_ASYNC"), "RELAY_SEND_ASYNC") is not False,
            bulk_batch_size=parse_int(get("BULK_BATCH_SIZE"), "RELAY_BULK_BATCH_SIZE", cls.bulk_batch_size,
                                      minimum=1),
            spool_dir=get("SPOOL_DIR"),
            spool_max_bytes=parse_int(get("SPOOL_MAX_BYTES"), "RELAY_SPOOL_MAX_BYTES", cls.spool_max_bytes,
                                      minimum=65536),
            spool_max_files=parse_int(get("SPOOL_MAX_FILES"), "RELAY_SPOOL_MAX_FILES", cls.spool_max_files,
                                      minimum=1),
            dev_outbox=bool(parse_bool(get("DEV_OUTBOX"), "RELAY_DEV_OUTBOX")),
            trusted_proxies=parse_trusted_proxies(get("TRUSTED_PROXIES")),
            signin_account_limit=get("SIGNIN_ACCOUNT_LIMIT") or cls.signin_account_limit,
            metrics_token=get("METRICS_TOKEN"),
            metrics_cache_seconds=parse_int(get("METRICS_CACHE_SECONDS"), "RELAY_METRICS_CACHE_SECONDS",
                                            cls.metrics_cache_seconds),
            guard=parse_guard_mode(get("GUARD") or cls.guard),
            guard_hold_for=parse_duration(get("GUARD_HOLD_FOR") or "24h", "RELAY_GUARD_HOLD_FOR"),
            ack_window=parse_duration(get("ACK_WINDOW") or "30m", "RELAY_ACK_WINDOW"),
            escalation_step=parse_duration(get("ESCALATION_STEP") or "15m", "RELAY_ESCALATION_STEP"),
            sweep_every=parse_sweep_every(get("SWEEP_EVERY")),
        )
        return settings.with_defaults()

    def with_defaults(self) -> "Settings":
        """Fill the embedded defaults (SQLite and a filesystem broker under var/)."""
        changes: dict[str, object] = {}
        if not self.database_url:
            changes["database_url"] = f"sqlite:///{self.var_dir / 'relay.sqlite3'}"
        if not self.broker_url:
            changes["broker_url"] = "filesystem://localhost//"
        if not self.public_base_url:
            changes["public_base_url"] = f"http://127.0.0.1:{self.port}"
        return replace(self, **changes) if changes else self  # type: ignore[arg-type]  # each value fits its field

    def replace(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def production(self) -> bool:
        """An https public base: members reach this relay over the internet."""
        return self.public_base_url.lower().startswith("https://")

    def startup_problems(self) -> list[str]:
        """Settings a serving process must refuse to start with (each names its variable)."""
        problems = []
        if self.production and not self.secret_key:
            problems.append("RELAY_SECRET_KEY is empty but RELAY_PUBLIC_BASE_URL is https: set RELAY_SECRET_KEY to "
                            "the same long random string in every process (e.g. `python -c 'import secrets; "
                            "print(secrets.token_hex(32))'`); relay does not mint a key of its own in production")
        problems.extend(self.dev_outbox_problems())
        return problems

    def dev_outbox_problems(self) -> list[str]:
        if self.dev_outbox and self.production:
            return ["RELAY_DEV_OUTBOX=on is refused when RELAY_PUBLIC_BASE_URL is https: the dev outbox shows "
                    "members' numbers, addresses and messages; turn it off in production"]
        return []

    def check_startup(self) -> None:
        """Raise SettingsError when a serving process (web, worker, beat) must not start."""
        problems = self.startup_problems()
        if problems:
            raise SettingsError("; ".join(problems))

    @property
    def twilio_configured(self) -> bool:
        """True when outbound SMS goes to the Twilio API rather than the dev outbox."""
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)

    @property
    def whatsapp_enabled(self) -> bool:
        """Issue 19: the WhatsApp channel is on only with RELAY_TWILIO_WHATSAPP_FROM set."""
        return bool(self.whatsapp_from)

    @property
    def whatsapp_number(self) -> str:
        """Our WhatsApp sender as Twilio writes it in `To` (`whatsapp:+…`), '' for a Messaging Service."""
        return self.whatsapp_from if self.whatsapp_from.startswith("whatsapp:") else ""

    @property
    def uses_messaging_service(self) -> bool:
        return self.twilio_from.startswith("MG")

    @property
    def own_numbers(self) -> frozenset[str]:
        """Our own sending numbers: a message from one of them is a loop."""
        numbers = set(self.twilio_numbers)
        if self.twilio_from and not self.uses_messaging_service:
            numbers.add(self.twilio_from)
        return frozenset(numbers)

    @property
    def secure_cookies(self) -> bool:
        """Session cookies carry Secure unless turned off, or (when unset) the public base is plain http://."""
        if self.session_cookie_secure is not None:
            return self.session_cookie_secure
        return not self.public_base_url.startswith("http://")

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @property
    def media_root(self) -> Path:
        """Where case image files are kept (RELAY_MEDIA_DIR, else <var>/media)."""
        return Path(self.media_dir) if self.media_dir else self.var_dir / "media"

    @property
    def spool_path(self) -> Path:
        """Where webhooks wait while the database is down (RELAY_SPOOL_DIR, else <var>/spool)."""
        return Path(self.spool_dir) if self.spool_dir else self.var_dir / "spool"

    @property
    def twilio_api_base(self) -> str:
        """Twilio's REST API: the only place MMS media is fetched from."""
        return self.twilio_api_url or "https://api.twilio.com"

    @property
    def broker_dir(self) -> Path:
        return self.var_dir / "broker"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def webhook_account_sid(self) -> str:
        """The AccountSid inbound Twilio webhooks must carry: RELAY_TWILIO_ACCOUNT_SID, or in the dev
        outbox mode (no auth token) the one `relay demo` puts in its curl; "" means not checked."""
        if self.twilio_account_sid:
            return self.twilio_account_sid
        return DEV_ACCOUNT_SID if not self.twilio_auth_token else ""

    def signing_token(self) -> str:
        """The token inbound Twilio signatures are checked with.

        Without RELAY_TWILIO_AUTH_TOKEN (the dev outbox mode) a random token is kept in
        var/dev-twilio-token so signatures are still checked and `relay demo` can sign its curl.
        """
        return self.twilio_auth_token or _dev_secret(self.var_dir / "dev-twilio-token")

    def secret(self) -> str:
        """RELAY_SECRET_KEY, or (in dev mode) a random key kept in var/dev-secret-key."""
        return self.secret_key or _dev_secret(self.var_dir / "dev-secret-key")

    @property
    def smtp_configured(self) -> bool:
        """True when outbound email goes to an SMTP server rather than the dev outbox."""
        return bool(self.smtp_url)

    @property
    def email_domain(self) -> str:
        """The domain of Message-IDs and reply addresses."""
        if self.mail_domain:
            return self.mail_domain
        if "@" in self.mail_from:
            return self.mail_from.rsplit("@", 1)[1].strip(">").lower()
        return (urlsplit(self.public_base_url).hostname or "localhost").lower()

    @property
    def email_from(self) -> str:
        return self.mail_from or f"{self.network_name.lower().replace(' ', '-')}@{self.email_domain}"

    def case_url(self, code: str) -> str:
        return f"{self.public_base_url}/library/cases/{code}"

    @property
    def library_url(self) -> str:
        """The library's front page, the link of notices about no particular case."""
        return f"{self.public_base_url}/library/"


def _dev_secret(path: Path) -> str:
    """A random secret kept in a file, created once; two processes starting together agree on it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)  # one per writer
        tmp = Path(name)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(secrets.token_hex(16))
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()
