"""The Reach pages' words (chart titles, series, table headers, descriptions), by key, as messages of the one
gettext catalogue (relay/translations/, docs/i18n.md): `make translations` extracts them (N_) and each
language's messages.po translates them, so adding a language is a translator's job, not a dictionary here.
A word with variables keeps them as %(name)s placeholders, filled with `%` where it is used."""
from __future__ import annotations

from relay.render.i18n import N_, languages, translate

WORDS: dict[str, str] = {
    # the page
    "page": N_("Reach"), "period": N_("Period"), "30d": N_("Last 30 days"), "12m": N_("Last 12 months"),
    "custom": N_("Custom"), "from": N_("From"), "to": N_("To"), "show": N_("Show"), "numbers": N_("Numbers"),
    "csv": N_("Download CSV"), "total": N_("Total"), "empty": N_("Nothing in this period."), "back": N_("Back"),
    "notices_sent": N_("Notices sent in the period"),
    "country_count": N_("%(members)s members in %(countries)s countries"),
    "unplaced": N_("%(n)s active members not placed in a country (neither their number nor their time zone "
                   "names one, or a new number not read yet)"),
    "headline": N_("Headline figures"), "headline_on": N_("Published on the library's front page"),
    "headline_off": N_("Not published"), "publish": N_("Publish"), "withdraw": N_("Withdraw"),
    # the charts' titles (chart_<name> for each name of relay.reach.figures.CHARTS)
    "chart_readers": N_("Library readers per day"), "chart_cases": N_("Views per case (top 20)"),
    "chart_deliveries": N_("Deliveries by channel and outcome"),
    "chart_held_back": N_("Deliveries held back by the ladder per week, by channel"),
    "chart_acks": N_("Acknowledgement rate per notice"),
    "chart_replies": N_("Replies per day by channel"), "chart_countries": N_("Members by country"),
    "chart_consent": N_("Opt-outs and ladder changes per week"),
    "case_views": N_("Views per day"), "case_activity": N_("Posts per day by channel"),
    "notice_timeline": N_("Deliveries handed over after the notice was sent, by channel"),
    # the tables' headers and the charts' series (relay.reach.figures Table headers)
    "day": N_("Day"), "week": N_("Week"), "visitors": N_("Visitors"), "members": N_("Members"), "case": N_("Case"),
    "title": N_("Title"), "views": N_("Views"), "channel": N_("Channel"), "country": N_("Country"),
    "by number": N_("By number"), "by time zone": N_("By time zone"), "opt-outs": N_("Opt-outs"),
    "ladder changes": N_("Ladder changes"), "notice": N_("Notice"), "rate": N_("Rate (%)"),
    "recipients": N_("Recipients"), "acknowledged": N_("Acknowledged"), "minutes": N_("Minutes after"),
    # outcomes of a delivery (relay.reach.figures OUTCOMES)
    "delivered": N_("Delivered"), "read": N_("Read"), "sent": N_("Sent (no receipt yet)"), "waiting": N_("Waiting"),
    "held": N_("Held (notice paused)"), "held_back": N_("Held back by the ladder"), "failed": N_("Failed"),
    "opted_out": N_("Opted out"),
    # channels (the same messages as the library's channel labels)
    "sms": N_("SMS"), "email": N_("Email"), "whatsapp": N_("WhatsApp"), "voice": N_("Voice call"), "web": N_("Web"),
    "console": N_("Console"), "mms": N_("MMS"), "intake": N_("Intake"), "api": N_("API"),
    # text alternatives of the charts
    "desc_series": N_("%(title)s, %(start)s to %(end)s. Total %(total)s: %(parts)s."),
    "desc_ranking": N_("%(title)s, %(start)s to %(end)s. %(n)s shown; highest: %(first)s."),
    "desc_timeline": N_("%(title)s; notice sent %(sent)s; %(total)s deliveries handed over."),
}


def labels_for(language: str) -> dict[str, str]:
    """The words in `language` (English, the catalogue's source, for a language relay does not speak)."""
    language = language if language in languages() else "en"
    return {key: translate(language, message) for key, message in WORDS.items()}
