"""The webhook signature library, checked against known answers and other verifiers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import standardwebhooks
import stripe
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

import rex
from rex import (
    InvalidPayloadError,
    SignatureError,
    construct_event,
    construct_event_from_request,
    verify_signature,
)
from rex._signing import (
    generate_secret,
    is_standard_webhooks_secret,
    sign,
    sign_standard_webhooks,
)
from tests.support import missing


def now() -> int:
    return int(time.time())


EVENT = json.dumps(
    {"id": "evt_01HQ", "event": "contact.created", "data": {"email": "zoë@example.com"}},
    ensure_ascii=False,
).encode()


# --- Known answer -------------------------------------------------------------------


def test_known_answer_vector() -> None:
    expected = "1b3d69df55f1e52f05224ba94a5162abeb17ef52cd7f4948c390f810d6a87e98"
    header = sign(b"hello !", ["secret"], 1636936200)
    assert header == f"t=1636936200,v1={expected}"
    verify_signature(b"hello !", header, "secret", tolerance=None)
    verify_signature("hello !", header, "secret", tolerance=None)


def test_one_v1_per_secret_in_the_given_order() -> None:
    header = sign(b"x", ["new", "old"], 1700000000)
    t, new, old = header.split(",")
    assert t == "t=1700000000"
    assert new == "v1=" + sign(b"x", ["new"], 1700000000).split(",v1=")[1]
    assert old == "v1=" + sign(b"x", ["old"], 1700000000).split(",v1=")[1]


def test_sign_needs_a_sequence_of_secrets() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        sign(b"x", [], 1)
    with pytest.raises(TypeError, match="not one string"):
        sign(b"x", "whsec_abc", 1)


# --- Round trips --------------------------------------------------------------------

secret_lists = st.lists(st.text(max_size=40), min_size=1, max_size=4, unique=True)


@given(payload=st.binary(max_size=1024), secrets=secret_lists)
def test_round_trip_with_every_secret(payload: bytes, secrets: list[str]) -> None:
    header = sign(payload, secrets, now())
    assert header.count(",v1=") == len(secrets)
    for secret in secrets:
        verify_signature(payload, header, secret)


@given(
    payload=st.binary(min_size=1, max_size=1024),
    secrets=secret_lists,
    position=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_flipped_bit_fails(payload: bytes, secrets: list[str], position: int, bit: int) -> None:
    header = sign(payload, secrets, now())
    tampered = bytearray(payload)
    tampered[position % len(payload)] ^= 1 << bit
    for secret in secrets:
        with pytest.raises(SignatureError) as info:
            verify_signature(bytes(tampered), header, secret)
        assert info.value.reason == "no_matching_signature"


@given(payload=st.binary(max_size=256), secrets=secret_lists, wrong=st.text(max_size=40))
def test_wrong_secret_fails(payload: bytes, secrets: list[str], wrong: str) -> None:
    # HMAC pads its key with NUL bytes to the block size, so keys that differ only by
    # trailing NULs ("" and "\x00") are the same key: such a "wrong" secret is not wrong.
    if wrong.rstrip("\x00") in {secret.rstrip("\x00") for secret in secrets}:
        wrong += "!"
    header = sign(payload, secrets, now())
    with pytest.raises(SignatureError) as info:
        verify_signature(payload, header, wrong)
    assert info.value.reason == "no_matching_signature"


def test_timestamp_is_signed() -> None:
    t = now()
    header = sign(EVENT, ["s"], t).replace(f"t={t}", f"t={t + 1}")
    with pytest.raises(SignatureError) as info:
        verify_signature(EVENT, header, "s")
    assert info.value.reason == "no_matching_signature"


# --- Failure reasons ----------------------------------------------------------------

GOOD_V1 = sign(EVENT, ["s"], 1700000000).split(",")[1]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "   ",
        GOOD_V1,  # no t=
        f"t=,{GOOD_V1}",
        f"t=abc,{GOOD_V1}",
        f"t=1700000000.0,{GOOD_V1}",
        f"t=-1700000000,{GOOD_V1}",
        f"t=\u0661\u0667\u0660\u0660,{GOOD_V1}",  # Arabic-Indic digits: str.isdigit() is True
        f"t={'9' * 5000},{GOOD_V1}",
        f"t=1700000000,t=1700000000,{GOOD_V1}",
        "t=1700000000",  # no v1=
        "t=1700000000,v0=abc,v2=def",  # only unknown schemes
        f"t=1700000000,{GOOD_V1},garbage",
        f"t=1700000000,{GOOD_V1},",
    ],
)
def test_malformed_headers(header: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify_signature(EVENT, header, "s", tolerance=None)
    assert info.value.reason == "malformed_header"
    assert str(info.value)


def test_unknown_schemes_and_spaces_are_tolerated() -> None:
    t = now()
    v1 = sign(EVENT, ["s"], t).split(",")[1]
    verify_signature(EVENT, f"t={t},v0=deadbeef,{v1},v2=cafe", "s")
    verify_signature(EVENT, f"t={t}, v0=deadbeef, {v1}", "s")


def test_non_ascii_signature_value_is_a_mismatch_not_a_crash() -> None:
    with pytest.raises(SignatureError) as info:
        verify_signature(EVENT, f"t={now()},v1=é✓", "s")
    assert info.value.reason == "no_matching_signature"


def test_too_old() -> None:
    header = sign(EVENT, ["s"], now() - 400)
    with pytest.raises(SignatureError) as info:
        verify_signature(EVENT, header, "s")
    assert info.value.reason == "timestamp_too_old"
    assert "tolerance" in str(info.value)
    verify_signature(EVENT, header, "s", tolerance=None)
    verify_signature(EVENT, header, "s", tolerance=600)


def test_in_the_future() -> None:
    header = sign(EVENT, ["s"], now() + 400)
    with pytest.raises(SignatureError) as info:
        verify_signature(EVENT, header, "s")
    assert info.value.reason == "timestamp_in_future"
    assert "clock" in str(info.value)
    verify_signature(EVENT, header, "s", tolerance=None)


def test_within_tolerance_both_ways() -> None:
    for offset in (-250, 0, 250):
        verify_signature(EVENT, sign(EVENT, ["s"], now() + offset), "s")


def test_forgery_is_reported_as_such_even_when_stale() -> None:
    header = sign(EVENT, ["other"], now() - 4000)
    with pytest.raises(SignatureError) as info:
        verify_signature(EVENT, header, "s")
    assert info.value.reason == "no_matching_signature"


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        verify_signature(EVENT, sign(EVENT, ["s"], now()), "s", tolerance=-1)


def test_signature_error_is_a_value_error() -> None:
    assert issubclass(SignatureError, ValueError)
    assert issubclass(InvalidPayloadError, ValueError)
    assert not issubclass(InvalidPayloadError, SignatureError)


# --- construct_event ----------------------------------------------------------------


def test_construct_event_returns_the_parsed_event() -> None:
    header = sign(EVENT, ["s"], now())
    assert construct_event(EVENT, header, "s") == json.loads(EVENT)
    assert construct_event(EVENT.decode(), header, "s") == json.loads(EVENT)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe{}", b""])
def test_construct_event_refuses_a_signed_non_object(body: bytes) -> None:
    with pytest.raises(InvalidPayloadError) as info:
        construct_event(body, sign(body, ["s"], now()), "s")
    assert "JSON" in str(info.value)


def test_construct_event_verifies_before_parsing() -> None:
    with pytest.raises(SignatureError):
        construct_event(b"not json", sign(b"not json", ["other"], now()), "s")


# --- Other verifiers ----------------------------------------------------------------


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


# verifySignature copied verbatim from shared/seeds/webhook-listeners.txt (Express), with
# only the TypeScript annotations removed; the rest reads stdin and prints the result.
NODE_VERIFIER = """
const crypto = require("crypto");

function verifySignature(payload, signature, secret) {
  const [tPart, vPart] = signature.split(",");
  const timestamp = tPart.replace("t=", "");
  const expected = vPart.replace("v1=", "");

  const signed = crypto
    .createHmac("sha256", secret)
    .update(`${timestamp}.${payload}`)
    .digest("hex");

  return crypto.timingSafeEqual(Buffer.from(signed), Buffer.from(expected));
}

const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", () => {
  const payload = Buffer.concat(chunks).toString();
  process.stdout.write(String(verifySignature(payload, process.argv[2], process.argv[3])));
});
"""


NodeVerifier = Callable[[bytes, str, str], bool]


@pytest.fixture
def node_verify(tmp_path: Path) -> NodeVerifier:
    node = shutil.which("node")
    if node is None:
        missing("node is not on PATH: cannot run the seeds' Node.js verifier")
    script = tmp_path / "verify.js"
    script.write_text(NODE_VERIFIER)

    def run(payload: bytes, header: str, secret: str) -> bool:
        result = subprocess.run(
            [node, str(script), header, secret],
            input=payload,
            capture_output=True,
            check=True,
            timeout=30,
        )
        return {b"true": True, b"false": False}[result.stdout]

    return run


def test_seed_python_verifier_accepts_our_header() -> None:
    secret = "whsec_your_signing_secret"
    assert verify_webhook(EVENT, sign(EVENT, [secret], now()), secret)
    assert not verify_webhook(EVENT, sign(EVENT, ["other"], now()), secret)


def test_seed_node_verifier_accepts_our_header(node_verify: NodeVerifier) -> None:
    secret = "whsec_test_secret"
    assert node_verify(EVENT, sign(EVENT, [secret], now()), secret) is True
    assert node_verify(EVENT, sign(EVENT, ["other"], now()), secret) is False


def test_seed_verifiers_read_only_one_v1_of_a_rotation_header(node_verify: NodeVerifier) -> None:
    # Pins down the seeds' behaviour during a rotation (header: newest v1 first):
    # the Python snippet keeps the last v1 (dict()), the Node one takes the first.
    header = sign(EVENT, ["new", "old"], now())
    assert verify_webhook(EVENT, header, "old")
    assert not verify_webhook(EVENT, header, "new")
    assert node_verify(EVENT, header, "new") is True
    assert node_verify(EVENT, header, "old") is False
    verify_signature(EVENT, header, "new")
    verify_signature(EVENT, header, "old")


def test_stripe_accepts_our_headers() -> None:
    payload = EVENT.decode()
    header = sign(EVENT, ["whsec_new", "whsec_old"], now())
    for secret in ("whsec_new", "whsec_old"):
        assert stripe.WebhookSignature.verify_header(payload, header, secret, 300)
        assert stripe.WebhookSignature.verify_header(
            payload, sign(EVENT, [secret], now()), secret, 300
        )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_other", 300)


def test_we_accept_stripe_generated_headers() -> None:
    header = stripe.WebhookSignature.generate_signature_header(
        EVENT.decode(), "whsec_x", timestamp=now()
    )
    verify_signature(EVENT, header, "whsec_x")


# --- Standard Webhooks --------------------------------------------------------------


def standard_headers(
    msg_id: str, timestamp: int, payload: bytes, secrets: list[str]
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(msg_id, timestamp, payload, secrets),
    }


def test_standard_webhooks_library_accepts_our_headers() -> None:
    new, old = generate_secret(), generate_secret()
    headers = standard_headers("evt_01HQ", now(), EVENT, [new, old])
    assert headers["webhook-signature"].count(" ") == 1
    for secret in (new, old):
        assert standardwebhooks.Webhook(secret).verify(EVENT, headers) == json.loads(EVENT)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(EVENT, headers)


@given(payload=st.text(max_size=512), msg_id=st.text("abcdefghij_0123456789", min_size=1))
def test_standard_webhooks_round_trip(payload: str, msg_id: str) -> None:
    secret = generate_secret()
    headers = standard_headers(msg_id, now(), payload.encode(), [secret])
    standardwebhooks.Webhook(secret).verify(payload.encode(), headers, json_parse=False)


def test_standard_webhooks_known_answer() -> None:
    # The example from the Standard Webhooks specification (also Svix's docs).
    signature = sign_standard_webhooks(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_standard_webhooks_refuses_other_secrets() -> None:
    with pytest.raises(ValueError, match="Standard Webhooks secret"):
        sign_standard_webhooks("m", 1, b"{}", ["whsec_test_secret"])
    with pytest.raises(ValueError, match="at least one secret"):
        sign_standard_webhooks("m", 1, b"{}", [])


def b64(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("whsec_" + b64(16), True),
        ("whsec_" + b64(24), True),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", True),
        ("whsec_" + b64(15), False),  # too short a key
        ("whsec_your_signing_secret", False),  # the seeds' secrets: '_' is not base64
        ("whsec_test_secret", False),
        (b64(32), False),  # no prefix
        ("whsec_" + b64(32).rstrip("="), False),  # padding missing
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 12).decode(), False),  # '-', '_'
        ("whsec_" + b64(32) + "\u00e9", False),
        ("whsec_", False),
        ("", False),
    ],
)
def test_is_standard_webhooks_secret(secret: str, expected: bool) -> None:
    assert is_standard_webhooks_secret(secret) is expected


def test_generated_secrets() -> None:
    generated = [generate_secret() for _ in range(200)]
    assert len(set(generated)) == len(generated)
    for secret in generated:
        assert is_standard_webhooks_secret(secret)
        body = secret.removeprefix("whsec_")
        assert "+" not in body and "/" not in body
        assert len(base64.b64decode(body, validate=True)) == 32
        assert base64.urlsafe_b64decode(body) == base64.b64decode(body)


def test_public_api_is_exported() -> None:
    for name in (
        "DEFAULT_TOLERANCE",
        "InvalidPayloadError",
        "SignatureError",
        "construct_event",
        "construct_event_from_request",
        "verify_signature",
        "__version__",
    ):
        assert name in rex.__all__
        assert hasattr(rex, name)
    assert rex.DEFAULT_TOLERANCE == 300


# --- ASGI helper --------------------------------------------------------------------


def starlette_request(body: bytes, headers: dict[str, str]) -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw}, receive)


async def test_construct_event_from_request() -> None:
    request = starlette_request(EVENT, {"X-Rex-Signature": sign(EVENT, ["new", "s"], now())})
    assert await construct_event_from_request(request, "s") == json.loads(EVENT)


async def test_construct_event_from_request_without_header() -> None:
    with pytest.raises(SignatureError) as info:
        await construct_event_from_request(starlette_request(EVENT, {}), "s")
    assert info.value.reason == "malformed_header"
    assert "X-Rex-Signature" in str(info.value)


async def test_construct_event_from_request_with_bad_signature() -> None:
    request = starlette_request(EVENT, {"x-rex-signature": sign(EVENT, ["other"], now())})
    with pytest.raises(SignatureError) as info:
        await construct_event_from_request(request, "s")
    assert info.value.reason == "no_matching_signature"
