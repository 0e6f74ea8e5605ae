"""Patients' names, in the forms clinicians write them.

| finds | why |
|---|---|
| `patient Jane Doe`, `pt John A. Smith`, `patient named Jane Doe` | "patient"/"pt" followed by a capitalised first and last name |
| `Mr. Lee`, `Mrs Jane Doe`, `Ms. Kim`, `Miss Park` | clinicians write patients with a courtesy title, colleagues with `Dr.`/`Prof.` |
| `pt name: Jane Doe`, `patient name = Kim Minsu`, `name: Jane Doe`, `patient: Jane Doe` | a name after a label |
| `환자 김철수`, `김철수 환자`, `환자명: 김철수`, `환자 이름 김철수`, `성명: 박영희` | a Korean name (a common surname and one or two syllables) beside or after 환자 |
| `김철수님`, `박영희씨`, `김씨` | a Korean name with the honorific 님 or 씨 |

Never found: clinicians' names (`Dr. Park`, `Prof. Kim`, `이 선생님`, `김 교수님`, `박민수 교수님`),
eponyms (`Fleischner`, `Hounsfield`, `Kerley B lines`), and words that only look like a name after 환자
(`환자 상태`, `환자 이송은`, `고령의 환자`). Written by hand: presidio finds names only with a spaCy or
transformers model (a download, slow, and trained on news, not on clinical shorthand); the forms above
are what this field writes, and the corpus in tests/data/guard/ measures them."""
from __future__ import annotations

import re

from relay.guard.findings import PATIENT_NAME, Finding

# The most common Korean surnames (about 90 % of the population); a rarer one needs a label.
_SURNAMES = ("김이박최정강조윤장임한오서신권황안송류유전홍고문양손배백허노남심하곽성차주우구민진나지엄채원천방공현함변"
             "염여추도소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉")
_HANGUL = "가-힣"
# Words after 환자 / before 환자 / before 님 that begin like a surname but are not names.
_NOT_NAMES = {
    # after 환자
    "이송", "상태", "나이", "정보", "보호자", "가족", "본인", "수", "경과", "증상", "진료", "입원", "퇴원", "전원",
    "사망", "관리", "치료", "검사", "영상", "소견", "병력", "안전", "동의", "이름", "번호", "모두", "중", "중에",
    "대부분", "여러분", "분", "분들", "전체", "주소", "주요", "상담", "문진", "관찰", "발생", "방문", "선별", "확인",
    "이동", "이후", "이전", "이상", "기록", "기저", "기준", "기타", "정도", "정리", "조사", "조기", "조영", "조회",
    "장기", "장비", "한명", "한분", "한쪽", "오늘", "오후", "오전", "서류", "신상", "신원", "신규", "권고", "황달",
    "안내", "송부", "유무", "유사", "전반", "전신", "홍반", "고령", "고열", "문제", "양측", "손상", "배정", "백신",
    "허가", "노출", "남성", "남자", "심장", "하루", "하나", "성별", "차트", "주치의", "우측", "구역", "민감", "진단",
    "진행", "나머지", "지난", "지금", "채혈", "원인", "천식", "방사선", "공유", "현재", "함께", "변화", "염증",
    "여성", "여자", "추적", "추가", "도착", "소아", "석회", "선정", "설명", "마취", "길이", "연령", "위치", "표시",
    "명단", "기관", "반응", "금식", "육안", "인적", "제외", "모니터", "국소", "은폐", "용태", "예후", "경우", "봉합",
    # before 환자 / 님 / 씨
    "고령의", "기저의", "중증의", "경증의", "확진된", "입원한", "동일한", "해당", "이런", "이번", "모든", "같은",
    "선생", "교수", "원장", "과장", "부장", "실장", "팀장", "회장", "소장", "센터장", "병원장", "이사장", "위원장",
    "간사", "총무", "고객", "손", "어머", "아버", "부모", "사모", "형", "누", "따", "아드", "하느", "부처", "스",
    "주", "임금", "선배", "후배", "전공의", "간호사", "기사", "인턴", "레지던트", "펠로우", "환자", "성", "방", "전", "서", "이", "한", "양", "정",
}
_TITLE_SUFFIXES = ("선생", "교수", "원장", "과장", "부장", "실장", "팀장", "회장", "소장", "간호사", "기사", "의사")
_PARTICLE = "은는이가을를의와과도께에게씨님"

_EN_STOP = {"With", "Was", "Is", "Has", "Had", "In", "On", "At", "From", "And", "The", "Who", "Zero", "Safety",
            "History", "Information", "Data", "Care", "Group", "Cohort", "Number", "Age", "Sex", "ID", "No",
            "Education", "Positioning", "Chairman", "Chair", "Speaker", "President", "Secretary", "Editor", "Dose", "Characteristics", "Follow", "Management", "Outcome", "Outcomes"}

_NAME_WORD = r"[A-Z][a-z'’\-]+"
_EN_PATIENT = re.compile(
    rf"\b(?i:patient|pt\.?)\s+(?i:named\s+|called\s+|is\s+)?({_NAME_WORD}(?:\s+[A-Z]\.)?\s+{_NAME_WORD})\b")
_EN_TITLE = re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx)\.?\s+({_NAME_WORD}(?:\s+{_NAME_WORD})?)")
_EN_LABEL = re.compile(
    rf"\b(?i:(?:patient|pt\.?)(?:'s)?\s*name|name\s+of\s+(?:the\s+)?patient|name|patient|pt)\s*[:=]\s*"
    rf"({_NAME_WORD}(?:\s+(?:[A-Z]\.|{_NAME_WORD})){{0,2}})")
_KO_NAME = rf"[{_SURNAMES}][{_HANGUL}]{{1,3}}"
_KO_LABEL = re.compile(rf"(?:환자\s?명|환자\s?이름|환자\s?성명|성명|이름)\s*[:：=]?\s*([{_HANGUL}]{{2,4}})")
_KO_AFTER = re.compile(rf"(?:환자|\b(?i:pt\.?|patient))\s+([{_SURNAMES}][{_HANGUL}]{{2}})(?=[{_PARTICLE}]?(?:[^{_HANGUL}]|$))")
_KO_BEFORE = re.compile(rf"(?<![{_HANGUL}])([{_SURNAMES}][{_HANGUL}]{{2}})\s?환자")
_KO_HONORIFIC = re.compile(rf"(?<![{_HANGUL}])({_KO_NAME}?)\s?(님|씨)(?![{_HANGUL}]{{0}}[가-힣]*?(?:들))")


def _korean_name(word: str) -> bool:
    if word in _NOT_NAMES or word[:2] in _NOT_NAMES and len(word) == 3 and word[2] in _PARTICLE:
        return False
    return not word.endswith(_TITLE_SUFFIXES)


def find(text: str) -> list[Finding]:
    found: list[Finding] = []

    def add(m: re.Match, group: int = 1) -> None:
        found.append(Finding(PATIENT_NAME, m.start(group), m.end(group), 0.9))

    for m in _EN_PATIENT.finditer(text):
        if not set(m[1].split()) & _EN_STOP:
            add(m)
    for m in _EN_TITLE.finditer(text):
        if m[1].split()[0] not in _EN_STOP:
            add(m)
    for m in _EN_LABEL.finditer(text):
        if m[1].split()[0] not in _EN_STOP:
            add(m)
    if not re.search(rf"[{_HANGUL}]", text):
        return found
    for m in _KO_LABEL.finditer(text):
        if _korean_name(m[1]):
            add(m)
    for pattern in (_KO_AFTER, _KO_BEFORE):
        for m in pattern.finditer(text):
            if _korean_name(m[1]):
                add(m)
    for m in _KO_HONORIFIC.finditer(text):
        word, honorific = m[1], m[2]
        if not word or (honorific == "님" and len(word) < 3) or not _korean_name(word):
            continue
        add(m)
    return found
