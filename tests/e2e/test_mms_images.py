"""An MMS picture end to end: a signed Twilio webhook with MediaUrl0 reaches gunicorn, the Celery
worker processes it and its relay.fetch_media task fetches the picture from the Twilio stand-in with
the account's credentials, the first attempt failing so Celery retries it after the backoff; the
library (gunicorn) then serves the cleaned image and its thumbnail."""
from __future__ import annotations

import io

import pytest
import requests
from PIL import Image
from sqlalchemy import select

from relay.model.tables import CaseImage
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.unit.library.test_images import GPS_IFD, photo

from .processes import wait_until
from .test_distributed import LEE, Cluster, cluster  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


def test_an_mms_picture_is_fetched_retried_and_served(cluster: Cluster):
    cluster.seed_and_notify()
    cluster.wait_for_sent(5, "the new-case notice")
    cluster.standin.media_auth = (ACCOUNT_SID, AUTH_TOKEN)
    url = cluster.standin.add_media(ACCOUNT_SID, photo(size=(640, 480)), fail_times=1)
    form, response = cluster.sms(LEE, "C1 CT attached", NumMedia="1", MediaUrl0=url, MediaContentType0="image/jpeg")
    assert response.status_code == 200
    assert cluster.wait_processed(form["MessageSid"]).outcome == "posted"

    def stored():
        rows = cluster.rows(select(CaseImage))
        return rows if rows and rows[0].status == "stored" else None

    # the first fetch gets a 500; the retry comes after the 10 s backoff
    [image] = wait_until(stored, 45.0, "the MMS picture to be stored", watch=[cluster.web, cluster.worker])
    assert image.attempts == 2 and image.source == "mms"
    assert [(auth, status) for _, auth, status in cluster.standin.media_requests] == [
        ((ACCOUNT_SID, AUTH_TOKEN), 500), ((ACCOUNT_SID, AUTH_TOKEN), 200)]

    page = requests.get(f"{cluster.base_url}/library/cases/C1", timeout=10)
    assert f"/library/cases/C1/images/{image.id}/thumb" in page.text
    full = requests.get(f"{cluster.base_url}/library/cases/C1/images/{image.id}", timeout=10)
    assert full.status_code == 200 and full.headers["Content-Type"] == "image/jpeg"
    served = Image.open(io.BytesIO(full.content))
    assert served.size == (640, 480) and served.getexif().get_ifd(GPS_IFD) == {}
    thumb = requests.get(f"{cluster.base_url}/library/cases/C1/images/{image.id}/thumb", timeout=10)
    assert Image.open(io.BytesIO(thumb.content)).size == (320, 240)
