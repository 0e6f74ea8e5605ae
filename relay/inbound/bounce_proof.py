"""Which of relay's deliveries a bounce or complaint is provably about (issue 13: trust what is proven).

Anyone can mail relay a delivery report or a feedback report naming any address, so a report counts
only with proof that it is about mail relay sent, and then only for that mail's recipient:

- VERP (http://cr.yp.to/proto/verp.txt; Discourse's `replies+verp-<key>@`, PROTOCOLS.md §8): every
  email goes out with its own SMTP envelope sender `bounce+<token>@RELAY_MAIL_DOMAIN`, the token the
  delivery id signed with RELAY_SECRET_KEY (relay.infra.signing.signed_id, purpose "bounce", checked in constant
  time; made by relay.providers.verp, which every sender uses). Bounces go back to the envelope sender, so a report that arrives for such an address (the
  provider's envelope recipient, Mailgun `recipient`, Postmark `OriginalRecipient`) is about that delivery.
- A report sent elsewhere (feedback loops send to a registered address, some MTAs to From) counts when the
  returned original headers it quotes carry the delivery's signed token: `X-Relay-Delivery: <token>`,
  which relay writes on every email it sends, or `Return-Path: <bounce+token@...>`, which the receiving
  mailbox wrote from our envelope. A post's Message-ID is relay-signed too, but every recipient of the
  post (and whoever they forward it to) has it, so it names no copy and proves nothing here.

Only the token's delivery is proven: the report's lines about any other address change nobody.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr

from relay.inbound.bounces import returned_headers
from relay.providers.verp import DELIVERY_HEADER, is_bounce_address, read_bounce_token


@dataclass
class Proof:
    """The deliveries a report is proven to be about, and why anything else was not believed."""

    delivery_ids: set[int] = field(default_factory=set)
    refused: list[str] = field(default_factory=list)


def prove(settings, recipients, message) -> Proof:
    """The deliveries `message` (a report) is provably about: from the addresses it arrived for
    (`recipients`: envelope / provider recipients) and from the original headers it returns."""
    proof = Proof()
    secret = settings.secret()

    def address(value: str, where: str) -> None:
        if not is_bounce_address(settings, value):
            return
        token = (parseaddr(value)[1] or value).strip().lower().rpartition("@")[0].split("+", 1)[1]
        found = read_bounce_token(secret, token)
        if found is None:
            proof.refused.append(f"bad signature on the bounce address in {where}")
        else:
            proof.delivery_ids.add(found)

    for value in recipients:
        address(value, "the envelope recipient")
    for headers in returned_headers(message):
        for value in headers.get_all(DELIVERY_HEADER, []):
            found = read_bounce_token(secret, str(value).strip())
            if found is None:
                proof.refused.append(f"bad signature on the quoted {DELIVERY_HEADER}")
            else:
                proof.delivery_ids.add(found)
        for _name, value in getaddresses([str(v) for v in headers.get_all("Return-Path", [])]):
            address(value, "the quoted Return-Path")
    return proof
