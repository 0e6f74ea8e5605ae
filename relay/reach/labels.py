"""The Reach page's words in English and Korean (chart titles, series, table headers, descriptions)."""
from __future__ import annotations

LANGUAGES = ("en", "ko")

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "page": "Reach", "period": "Period", "30d": "Last 30 days", "12m": "Last 12 months", "custom": "Custom",
        "from": "From", "to": "To", "show": "Show", "numbers": "Numbers", "csv": "Download CSV",
        "readers": "Library readers per day", "cases": "Views per case (top 20)",
        "deliveries": "Deliveries by channel and outcome", "replies": "Replies per day by channel",
        "countries": "Members by country", "consent": "Opt-outs and ladder changes per week",
        "visitors": "visitors", "members": "members", "day": "day", "week": "week", "case": "case",
        "title": "title", "views": "views", "channel": "channel", "country": "country",
        "opt-outs": "opt-outs", "ladder changes": "ladder changes",
        "delivered": "delivered", "read": "read", "sent": "sent (no receipt yet)", "waiting": "waiting",
        "held": "held", "failed": "failed", "opted_out": "opted out",
        "sms": "SMS", "email": "email", "whatsapp": "WhatsApp", "web": "web", "console": "console",
        "total": "Total", "notices_sent": "Notices sent in the period",
        "country_count": "{members} members in {countries} countries",
        "unplaced": "{n} active members without a placed number (no phone, or not read yet)",
        "desc_series": "{title}, {start} to {end}. Total {total}: {parts}.",
        "desc_ranking": "{title}, {start} to {end}. {n} shown; highest: {first}.",
        "empty": "Nothing in this period.",
        "headline": "Headline figures", "headline_on": "Published on the library's front page",
        "headline_off": "Not published", "publish": "Publish", "withdraw": "Withdraw",
        "headline_text": "{members} members in {countries} countries, {readers} readers this month",
        "case_views": "Views per day", "case_activity": "Posts per day by channel",
        "notice_timeline": "Deliveries handed over after the notice was sent, by channel",
        "desc_timeline": "{title}; notice sent {sent}; {total} deliveries handed over.",
        "minutes": "minutes after", "back": "Back",
    },
    "ko": {
        "page": "도달 현황", "period": "기간", "30d": "최근 30일", "12m": "최근 12개월", "custom": "직접 지정",
        "from": "시작", "to": "끝", "show": "보기", "numbers": "수치", "csv": "CSV 내려받기",
        "readers": "일별 라이브러리 독자", "cases": "증례별 조회수 (상위 20)",
        "deliveries": "채널·결과별 발송", "replies": "채널별 일일 답글",
        "countries": "국가별 회원", "consent": "주별 수신 거부와 수신 단계 변경",
        "visitors": "방문자", "members": "회원", "day": "날짜", "week": "주", "case": "증례",
        "title": "제목", "views": "조회수", "channel": "채널", "country": "국가",
        "opt-outs": "수신 거부", "ladder changes": "수신 단계 변경",
        "delivered": "전달됨", "read": "읽음", "sent": "발송됨 (확인 전)", "waiting": "대기",
        "held": "보류", "failed": "실패", "opted_out": "수신 거부",
        "sms": "SMS", "email": "이메일", "whatsapp": "WhatsApp", "web": "웹", "console": "콘솔",
        "total": "합계", "notices_sent": "기간 중 보낸 공지",
        "country_count": "{countries}개국 회원 {members}명",
        "unplaced": "번호로 국가를 알 수 없는 활동 회원 {n}명 (전화번호 없음 또는 아직 확인 전)",
        "desc_series": "{title}, {start} ~ {end}. 합계 {total}: {parts}.",
        "desc_ranking": "{title}, {start} ~ {end}. {n}개 표시, 최고: {first}.",
        "empty": "이 기간에는 없습니다.",
        "headline": "대표 수치", "headline_on": "라이브러리 첫 화면에 공개 중", "headline_off": "공개하지 않음",
        "publish": "공개", "withdraw": "공개 중단",
        "headline_text": "{countries}개국 회원 {members}명, 이번 달 독자 {readers}명",
        "case_views": "일별 조회수", "case_activity": "채널별 일일 게시글",
        "notice_timeline": "공지 발송 후 채널별 전달 시점",
        "desc_timeline": "{title}; 공지 발송 {sent}; 전달 {total}건.",
        "minutes": "발송 후 분", "back": "돌아가기",
    },
}


def labels_for(language: str) -> dict[str, str]:
    """The words of `language`, English for anything else; a missing word falls back to its key."""
    found = dict(LABELS["en"])
    found.update(LABELS.get(language, {}))
    return found
