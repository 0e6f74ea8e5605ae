import pytest

from relay.guard import names


@pytest.mark.parametrize("text,value", [
    ("patient Jane Doe has", "Jane Doe"), ("Mr. Lee from ward 5", "Lee"), ("pt name: Minsu Choi", "Minsu Choi"),
    ("환자 김철수 흉부 CT", "김철수"), ("김철수 환자 CT", "김철수"), ("환자명: 박영희", "박영희"),
    ("최지훈님 검사 결과", "최지훈"), ("정수빈씨 CT", "정수빈"), ("환자 윤서연은 내일", "윤서연"),
])
def test_finds_patients_names_in_the_forms_clinicians_write(text, value):
    found = [text[f.start:f.end] for f in names.find(text)]
    assert value in found


@pytest.mark.parametrize("text", [
    "Agree with Dr. Park", "Prof. Kim showed it", "이 선생님 의견에 동의", "김 교수님께서", "박민수 교수님 판독",
    "Fleischner 2017", "Hounsfield units", "환자 상태 호전", "환자 이송은 내일", "고령의 환자에서", "환자분께 설명",
    "The patient presented with hemoptysis", "Patient history: ex-smoker", "Mr. Chairman, I propose",
])
def test_never_finds_clinicians_eponyms_or_words_next_to_patient(text):
    assert names.find(text) == []
