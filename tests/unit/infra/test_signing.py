"""Signed tokens stay the same across the faster signing of issue 18: links already in members' inboxes
(unsubscribe, preferences, reply addresses) must keep verifying."""
import base64
import hashlib
import hmac

from relay.infra.signing import read_reply_token, reply_token, signed_id, unsubscribe_token


def _full_digest_prefix(secret: str, message: str) -> str:
    """The tokens' signature as first written: the whole HMAC-SHA256 in base32, cut to 16 characters."""
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:16]


def test_tokens_are_the_first_sixteen_base32_characters_of_the_whole_hmac():
    for secret, member_id, case_id in [("k", 42, 7), ("bench-secret-key", 1, 99_999), ("ü-secret", 10**9, 1)]:
        assert unsubscribe_token(secret, member_id) == \
            f"{member_id}-email-{_full_digest_prefix(secret, f'unsubscribe:{member_id}:email')}"
        assert reply_token(secret, member_id, case_id) == \
            f"{member_id}-{case_id}-{_full_digest_prefix(secret, f'reply:{member_id}:{case_id}')}"
        assert signed_id(secret, "preferences", member_id) == \
            f"{member_id}-{_full_digest_prefix(secret, f'preferences:{member_id}')}"


def test_a_token_issued_before_the_change_still_verifies():
    # written down from the signing code before issue 18's change
    assert unsubscribe_token("k", 42) == "42-email-x7cipxbovsh4rcqn"
    assert signed_id("k", "preferences", 42) == "42-vbnec2tgjjetyfxr"
    assert reply_token("k", 42, 7) == "42-7-2rw7642ogetgy5ze"
    assert read_reply_token("k", "42-7-2rw7642ogetgy5ze") is not None
    assert read_reply_token("k", "42-7-2rw7642ogetgy5zf") is None
