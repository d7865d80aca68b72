"""Secret rotation and Standard Webhooks, verified on real deliveries by rex's own verifier,
Stripe's library, the ``standardwebhooks`` library and the seeds' snippets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import standardwebhooks
import stripe

import rex as rexlib
from rex.db.engine import Database
from rex.db.schema import endpoints
from rex.ids import utcnow
from tests.receiver import ReceivedRequest, Receiver
from tests.support import RexServer


# Copied verbatim from shared/seeds/lead-capture-webhook.txt ("Verify in Python").
def verify_webhook(payload: bytes, signature: str, secret: str) -> bool:
    parts = dict(p.split("=", 1) for p in signature.split(","))
    timestamp = parts["t"]
    expected = parts["v1"]

    signed = hmac.new(
        secret.encode(),
        f"{timestamp}.".encode() + payload,
        hashlib.sha256,
    ).hexdigest()

    return hmac.compare_digest(signed, expected)


def verifies(request: ReceivedRequest, secret: str) -> dict[str, bool]:
    """Which verifiers accept ``request`` with ``secret``."""
    header = request.headers["X-Rex-Signature"]
    results = {}
    try:
        rexlib.verify_signature(request.body, header, secret)
        results["rex"] = True
    except rexlib.SignatureError:
        results["rex"] = False
    try:
        results["stripe"] = stripe.WebhookSignature.verify_header(
            request.body.decode(), header, secret, 300
        )
    except stripe.SignatureVerificationError:
        results["stripe"] = False
    if not rexlib._signing.is_standard_webhooks_secret(secret):
        return results  # the library cannot even load such a secret
    try:
        standardwebhooks.Webhook(secret).verify(request.body, dict(request.headers))
        results["standardwebhooks"] = True
    except standardwebhooks.WebhookVerificationError:
        results["standardwebhooks"] = False
    return results


ALL = {"rex": True, "stripe": True, "standardwebhooks": True}
NONE = {"rex": False, "stripe": False, "standardwebhooks": False}


def capture(rex: RexServer, email: str) -> None:
    assert httpx.post(f"{rex.url}/capture", json={"email": email}).status_code == 201


def end_overlap(database_url: str, endpoint_id: str) -> None:
    """Move the previous secret's expiry into the past: what 24 hours later looks like."""

    async def run() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    sa.update(endpoints)
                    .where(endpoints.c.id == endpoint_id)
                    .values(previous_secret_expires_at=utcnow() - timedelta(seconds=1))
                )
        finally:
            await db.close()

    asyncio.run(run())


def test_rotation_signs_with_both_secrets_for_the_overlap(
    rex: RexServer, receiver: Receiver
) -> None:
    with rex.client() as client:
        created = client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]}).json()
        hook = created["data"]
        old = hook["secret"]
        assert rexlib._signing.is_standard_webhooks_secret(old)

        # Before the rotation: one secret, every verifier agrees.
        capture(rex, "before@example.com")
        [before] = receiver.wait_for(1)
        assert before.headers["X-Rex-Signature"].count("v1=") == 1
        assert before.headers["webhook-id"] == before.json()["id"]
        assert verifies(before, old) == ALL

        rotated = client.post(f"/webhooks/{hook['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["data"]["secret"]
        assert new != old and new.startswith("whsec_")
        assert rotated.json()["data"]["id"] == hook["id"]
        assert "secret" not in client.get(f"/webhooks/{hook['id']}").json()["data"]

        # During the overlap: a v1= per secret, newest first; either secret verifies.
        capture(rex, "during@example.com")
        during = receiver.wait_for(2)[1]
        header = during.headers["X-Rex-Signature"]
        assert header.count("v1=") == 2
        timestamp = header.split(",")[0].removeprefix("t=")
        newest = hmac.new(new.encode(), f"{timestamp}.".encode() + during.body, hashlib.sha256)
        assert header.split(",")[1] == f"v1={newest.hexdigest()}"
        assert during.headers["webhook-signature"].count("v1,") == 2
        assert verifies(during, old) == ALL
        assert verifies(during, new) == ALL
        assert verifies(during, "whsec_" + "A" * 43 + "=") == NONE
        # The seeds' Python snippet reads one v1 (the last, the old secret's): it keeps
        # working with the old secret until the overlap ends, as docs/webhooks.md warns.
        assert verify_webhook(during.body, header, old)
        assert not verify_webhook(during.body, header, new)

        # After the overlap: the new secret alone.
        end_overlap(rex.database_url, hook["id"])
        capture(rex, "after@example.com")
        after = receiver.wait_for(3)[2]
        assert after.headers["X-Rex-Signature"].count("v1=") == 1
        assert verifies(after, new) == ALL
        assert verifies(after, old) == NONE
        assert verify_webhook(after.body, after.headers["X-Rex-Signature"], new)


def test_rotation_to_a_given_secret_and_twice_in_a_row(rex: RexServer, receiver: Receiver) -> None:
    first = "whsec_your_signing_secret"  # not a Standard Webhooks secret: no webhook-* headers
    with rex.client() as client:
        hook = client.post(
            "/webhooks", json={"url": receiver.url(), "events": ["*"], "secret": first}
        ).json()["data"]
        capture(rex, "one@example.com")
        [plain] = receiver.wait_for(1)
        assert "webhook-signature" not in plain.headers
        assert verifies(plain, first)["rex"] and verifies(plain, first)["stripe"]

        second = "whsec_second_secret_1_0123456789abcdef"
        response = client.post(f"/webhooks/{hook['id']}/rotate-secret", json={"secret": second})
        assert response.json()["data"]["secret"] == second
        third = client.post(f"/webhooks/{hook['id']}/rotate-secret").json()["data"]["secret"]

        capture(rex, "two@example.com")
        request = receiver.wait_for(2)[1]
    # Rotating again during an overlap drops the oldest secret: two sign at most.
    assert request.headers["X-Rex-Signature"].count("v1=") == 2
    assert verifies(request, third)["rex"] and verifies(request, second)["rex"]
    assert not verifies(request, first)["rex"]
    # Only the Standard Webhooks secret among them signs webhook-signature.
    assert request.headers["webhook-signature"].count("v1,") == 1
    assert verifies(request, third)["standardwebhooks"]


SAME = "whsec_same_secret_0123456789abcdef"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"secret": "short"}, "secret"), ({"secret": SAME}, "secret"),
     ({"nonsense": 1}, "nonsense")],
)  # fmt: skip
def test_rotation_refuses_bad_secrets(
    rex: RexServer, receiver: Receiver, body: dict[str, Any], field: str
) -> None:
    with rex.client() as client:
        hook = client.post(
            "/webhooks",
            json={"url": receiver.url(), "events": ["*"], "secret": SAME},
        ).json()["data"]
        response = client.post(f"/webhooks/{hook['id']}/rotate-secret", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
        # Nothing changed: the original secret still signs, alone.
        capture(rex, "same@example.com")
    [request] = receiver.wait_for(1)
    assert request.headers["X-Rex-Signature"].count("v1=") == 1
    assert verifies(request, "whsec_same_secret_0123456789abcdef")["rex"]
