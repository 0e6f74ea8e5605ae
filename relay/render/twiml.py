"""issue 17: the TwiML of an escalation call: the notice's title read in the member's language, then a
Gather of one digit ("press 1 to acknowledge") whose answer Twilio posts, signed, to our webhook
(webhooks/twilio_voice.py). Built with twilio's own TwiML classes, which escape the text."""
from __future__ import annotations

from twilio.twiml.voice_response import Gather, VoiceResponse

VOICES = {"en": "en-US", "ko": "ko-KR"}
WORDS = {
    "en": {"intro": "Urgent notice from {network}.", "press": "Press 1 to acknowledge that you have received it.",
           "nothing": "No answer was recorded. Goodbye.", "thanks": "Thank you. Your acknowledgement is recorded.",
           "other": "That was not 1. Nothing was recorded. Goodbye."},
    "ko": {"intro": "{network} 긴급 공지입니다.", "press": "받으셨으면 1번을 눌러 주세요.",
           "nothing": "응답이 없어 기록하지 않았습니다.", "thanks": "감사합니다. 확인이 기록되었습니다.",
           "other": "1번이 아니어서 기록하지 않았습니다."},
}


def _words(language: str) -> dict[str, str]:
    return WORDS.get(language, WORDS["en"])


def call_twiml(title: str, language: str, network: str, gather_url: str) -> str:
    """The call: the title twice at most (a Gather that hears nothing says goodbye)."""
    voice, words = VOICES.get(language, VOICES["en"]), _words(language)
    response = VoiceResponse()
    gather = Gather(num_digits=1, action=gather_url, method="POST", timeout=8)
    gather.say(words["intro"].format(network=network), language=voice)
    gather.say(title, language=voice)
    gather.say(words["press"], language=voice)
    response.append(gather)
    response.say(words["nothing"], language=voice)
    return str(response.to_xml())


def gather_answer(language: str, recorded: bool) -> str:
    """What the caller hears after pressing a key."""
    response = VoiceResponse()
    response.say(_words(language)["thanks" if recorded else "other"], language=VOICES.get(language, "en-US"))
    return str(response.to_xml())
