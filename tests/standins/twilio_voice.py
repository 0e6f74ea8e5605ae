"""issue 17: the Twilio stand-in's Programmable Voice part (tests/standins/twilio_api.py routes to it):
it answers POST .../Calls.json like Twilio (201 with a CA... call resource, or 401/400/faults), keeps
each call with its TwiML, and can play the call's Gather: it reads the Gather's action URL out of the
TwiML and posts the digit there, signed with X-Twilio-Signature as Twilio would."""
from __future__ import annotations

import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from twilio.request_validator import RequestValidator

CALLS_PATH = "/2010-04-01/Accounts/{sid}/Calls.json"


@dataclass
class Call:
    sid: str
    account_sid: str
    to: str
    from_: str
    twiml: str
    at: float = field(default_factory=time.time)

    @property
    def gather(self) -> ET.Element:
        found = ET.fromstring(self.twiml).find("Gather")
        assert found is not None, f"no <Gather> in {self.twiml}"
        return found

    @property
    def gather_url(self) -> str:
        return self.gather.attrib["action"]

    @property
    def said(self) -> list[tuple[str, str]]:
        """(language, text) of each <Say> in the Gather."""
        return [(say.attrib.get("language", ""), say.text or "") for say in self.gather.iter("Say")]


def answer_call(handler, standin, account: str, auth: tuple[str, str], form: dict[str, str]) -> None:
    """Handle one POST to Calls.json on the stand-in's request handler."""
    if auth[0] != account:
        handler._record(account, auth, form, 401)
        return handler._reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
    if not form.get("To") or not form.get("From") or not (form.get("Twiml") or form.get("Url")):
        handler._record(account, auth, form, 400)
        return handler._reply(400, {"code": 21205 if not form.get("To") else 21201,
                                    "message": "To, From and Twiml or Url are required", "status": 400})
    fault = standin.call_fault(form["To"])
    if fault is not None:
        handler._record(account, auth, form, fault.status)
        return handler._reply(fault.status, {"code": fault.code, "message": fault.message or "error",
                                             "status": fault.status})
    sid = "CA" + secrets.token_hex(16)
    handler._record(account, auth, form, 201)
    with standin.lock:
        standin.calls.append(Call(sid, account, form["To"], form["From"], form.get("Twiml", "")))
    now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    handler._reply(201, {"sid": sid, "account_sid": account, "to": form["To"], "from": form["From"],
                         "status": "queued", "direction": "outbound-api", "api_version": "2010-04-01",
                         "date_created": now, "date_updated": now, "start_time": None, "end_time": None,
                         "duration": None, "price": None, "price_unit": "USD",
                         "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json", "subresource_uris": {}})


def gather_request(call: Call, digits: str, auth_token: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(url, form, headers) of the Gather callback Twilio would post for this call and these digits."""
    url = call.gather_url
    form = {"AccountSid": call.account_sid, "CallSid": call.sid, "From": call.from_, "To": call.to,
            "Digits": digits, "CallStatus": "in-progress", "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
    signature = RequestValidator(auth_token).compute_signature(url, form)
    return url, form, {"X-Twilio-Signature": signature}


def play_gather(call: Call, digits: str, auth_token: str, post_to: str | None = None) -> tuple[int, str]:
    """Post the Gather callback over real HTTP (to `post_to` instead of the action's host, when given:
    relay's public base may not be where it listens). Returns (status, TwiML answer)."""
    url, form, headers = gather_request(call, digits, auth_token)
    target = url if post_to is None else post_to.rstrip("/") + "/" + url.split("/", 3)[3]
    request = Request(target, data=urlencode(form).encode(), method="POST",
                      headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urlopen(request, timeout=10) as response:  # noqa: S310 (loopback only, in tests)
            return response.status, response.read().decode()
    except Exception as exc:  # an HTTPError carries the status
        return getattr(exc, "code", 0), str(exc)
