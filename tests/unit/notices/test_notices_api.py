"""The notices API: create a draft, preview, send or schedule, correct, and delivery counts; every
route behind the bearer token, with 400 for malformed requests, 404 for unknown notices and 422 for
requests the notice rules refuse."""
from __future__ import annotations

import pytest

from tests.conftest import run_worker
from webhooks.app import create_app

AUTH = {"Authorization": "Bearer t0ken"}
GUIDELINE = {"kind": "guideline", "title": "Masks in CT rooms", "body": "FFP2 for every scan",
             "lists": ["tft", "us"], "channels": ["sms", "email"], "expires_in": "6h"}


@pytest.fixture
def api(network):
    network.settings = network.settings.replace(api_token="t0ken")
    return create_app(services=network).test_client()


def create(api, **fields) -> dict:
    response = api.post("/api/v1/notices", json={**GUIDELINE, **fields}, headers=AUTH)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def test_create_preview_send_and_watch_the_counts(api, network):
    notice = create(api)
    assert notice["status"] == "draft" and notice["kind"] == "guideline" and notice["lists"] == ["tft", "us"]
    assert notice["link"] == "https://relay.example.org/library/" and notice["expires_at"]
    assert notice["deliveries"] == {} and notice["case"] is None

    preview = api.post(f"/api/v1/notices/{notice['id']}/preview", headers=AUTH)
    assert preview.status_code == 200
    body = preview.get_json()
    assert body["channels"] == {"sms": 5, "email": 5} and body["recipients"] == 5
    assert {c["country"]: c["recipients"] for c in body["countries"]} == {"KR": 3, "FR": 1, "US": 1}
    assert {s["language"]: s["encoding"] for s in body["sms"]} == {"en": "GSM-7", "ko": "UCS-2"}
    assert isinstance(body["estimated_cost_usd"], float) and body["estimated_cost_usd"] > 0
    assert {e["subject"] for e in body["email"]} == {"Guideline: Masks in CT rooms", "지침: Masks in CT rooms"}

    sent = api.post(f"/api/v1/notices/{notice['id']}/send", headers=AUTH)
    assert sent.status_code == 202, sent.get_data(as_text=True)
    assert sent.get_json()["queued"] == {"recipients": 5, "sms": 5, "email": 5}
    assert sent.get_json()["deliveries"] == {"sms": {"queued": 5}, "email": {"queued": 5}}
    run_worker(network)
    status = api.get(f"/api/v1/notices/{notice['id']}", headers=AUTH).get_json()
    assert status["status"] == "sent" and status["sent_at"]
    assert status["deliveries"] == {"sms": {"accepted": 5}, "email": {"accepted": 5}}
    assert status["totals"] == {"accepted": 10}

    again = api.post(f"/api/v1/notices/{notice['id']}/send", headers=AUTH)
    assert again.status_code == 422 and "not sent again" in again.get_json()["detail"]


def test_correct_reaches_the_original_recipients(api, network):
    notice = create(api, lists=["us"])
    api.post(f"/api/v1/notices/{notice['id']}/send", headers=AUTH)
    run_worker(network)
    response = api.post(f"/api/v1/notices/{notice['id']}/correct", json={"text": "FFP3, not FFP2"}, headers=AUTH)
    assert response.status_code == 201, response.get_data(as_text=True)
    correction = response.get_json()
    assert correction["kind"] == "correction" and correction["corrects"] == notice["id"]
    assert correction["queued"] == {"recipients": 1, "sms": 1, "email": 1}
    assert response.headers["Location"] == f"/api/v1/notices/{correction['id']}"


def test_schedule(api):
    notice = create(api, expires_in="3d")
    response = api.post(f"/api/v1/notices/{notice['id']}/send", json={"at": "2099-01-01T00:00:00Z"}, headers=AUTH)
    assert response.status_code == 422 and "expires" in response.get_json()["detail"]
    notice = create(api, expires_in=None)
    response = api.post(f"/api/v1/notices/{notice['id']}/send", json={"at": "2099-01-01T09:00:00+09:00"},
                        headers=AUTH)
    assert response.status_code == 202
    assert response.get_json()["status"] == "scheduled"
    assert response.get_json()["scheduled_for"] == "2099-01-01T00:00:00+00:00"


@pytest.mark.parametrize("body,status,detail", [
    (None, 400, "JSON object"),
    ([1, 2], 400, "JSON object"),
    ({"title": "x"}, 400, "kind"),
    ({**GUIDELINE, "lists": [1]}, 400, "list names"),
    ({**GUIDELINE, "title": 5}, 400, "wrong type"),
    ({**GUIDELINE, "kind": "memo"}, 422, "kind must be"),
    ({**GUIDELINE, "lists": ["nope"]}, 422, "no list named nope"),
    ({**GUIDELINE, "case": "C99"}, 422, "no case C99"),
    ({**GUIDELINE, "channels": "fax"}, 422, "channels must be"),
    ({**GUIDELINE, "expires_in": "soon"}, 422, "ISO 8601"),
    ({"kind": "correction", "body": "x", "corrects": 999}, 422, "no notice 999"),
    ({"kind": "correction", "body": "x", "corrects": True}, 400, "wrong type"),
])
def test_create_refuses_bad_requests(api, body, status, detail):
    response = api.post("/api/v1/notices", json=body, headers=AUTH)
    assert response.status_code == status, response.get_data(as_text=True)
    assert detail in response.get_json()["detail"]


def test_unknown_notices_and_bad_actions(api):
    notice = create(api)
    for method, path in (("get", "/api/v1/notices/999"), ("post", "/api/v1/notices/999/preview"),
                         ("post", "/api/v1/notices/999/send")):
        response = getattr(api, method)(path, headers=AUTH)
        assert response.status_code == 404 and response.get_json()["detail"] == "no notice 999"
    assert api.get("/api/v1/notices/abc", headers=AUTH).status_code == 404
    response = api.post(f"/api/v1/notices/{notice['id']}/correct", json={"text": "x"}, headers=AUTH)
    assert response.status_code == 422 and "not sent" in response.get_json()["detail"]
    response = api.post(f"/api/v1/notices/{notice['id']}/correct", json={"text": " "}, headers=AUTH)
    assert response.status_code == 400
    response = api.post(f"/api/v1/notices/{notice['id']}/send", json={"at": "tomorrow"}, headers=AUTH)
    assert response.status_code == 422 and "ISO 8601" in response.get_json()["detail"]
    response = api.post(f"/api/v1/notices/{notice['id']}/send", data="not json", headers=AUTH,
                        content_type="application/json")
    assert response.status_code == 400
    response = api.post(f"/api/v1/notices/{notice['id']}/send", json={"at": 5}, headers=AUTH)
    assert response.status_code == 400


def test_every_notice_route_needs_the_token(api):
    notice = create(api)
    for method, path in (("post", "/api/v1/notices"), ("get", f"/api/v1/notices/{notice['id']}"),
                         ("post", f"/api/v1/notices/{notice['id']}/preview"),
                         ("post", f"/api/v1/notices/{notice['id']}/send"),
                         ("post", f"/api/v1/notices/{notice['id']}/correct")):
        assert getattr(api, method)(path, json={}).status_code == 401
        assert getattr(api, method)(path, json={}, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_cancel_a_draft_or_scheduled_notice_and_what_correcting_one_says(api, network):
    """Issue 15, items 3 and 10: a draft or scheduled notice cannot be corrected, and the answer says what
    to do (cancel it and create a new one) through a route that exists; a cancelled notice is never sent."""
    scheduled = create(api, expires_in=None)
    assert api.post(f"/api/v1/notices/{scheduled['id']}/send", json={"at": "2099-01-01T00:00:00Z"},
                    headers=AUTH).status_code == 202
    for notice in (create(api), scheduled):
        response = api.post(f"/api/v1/notices/{notice['id']}/correct", json={"text": "FFP3"}, headers=AUTH)
        assert response.status_code == 422
        detail = response.get_json()["detail"]
        assert "edit it instead" not in detail and f"POST /api/v1/notices/{notice['id']}/cancel" in detail
        assert "create a new one" in detail
        cancelled = api.post(f"/api/v1/notices/{notice['id']}/cancel", headers=AUTH)
        assert cancelled.status_code == 200, cancelled.get_data(as_text=True)
        assert cancelled.get_json()["status"] == "cancelled" and cancelled.get_json()["id"] == notice["id"]
        again = api.post(f"/api/v1/notices/{notice['id']}/cancel", headers=AUTH)
        assert again.status_code == 422 and "only a draft or scheduled notice" in again.get_json()["detail"]
        sent = api.post(f"/api/v1/notices/{notice['id']}/send", headers=AUTH)
        assert sent.status_code == 422
        assert sent.get_json()["detail"] == (f"notice {notice['id']} was cancelled before it went out: it is never "
                                             "sent; create a new notice instead")
    assert api.post("/api/v1/notices/999/cancel", headers=AUTH).status_code == 404
    sent = create(api)
    api.post(f"/api/v1/notices/{sent['id']}/send", headers=AUTH)
    refused = api.post(f"/api/v1/notices/{sent['id']}/cancel", headers=AUTH)
    assert refused.status_code == 422 and "send a correction instead" in refused.get_json()["detail"]
