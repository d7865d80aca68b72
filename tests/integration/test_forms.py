"""Capture from any form or tool, against a served Rex and a real receiver: one test per
platform fixture (tests/fixtures/forms, each from the platform's documentation), honeypots,
errors that say what arrived, forms with a field_map, reprocess, CAPTCHA against a fake
verifier on 127.0.0.1, new-lead emails to a real SMTP server (aiosmtpd), and the property that
every post past the abuse limits leaves exactly one submission."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.receiver import Receiver, Respond
from tests.support import (
    RexServer,
    free_port,
    make_settings,
    migrate,
    serve_rex,
    sql,
    temporary_postgres_database,
    truncate_all,
    wait_until,
)

FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "forms").glob("*.json"))
JSON_ACCEPT = {"Accept": "application/json"}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def multipart(fields: list[list[str]]) -> tuple[bytes, str]:
    boundary = "----RexFixture" + uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    return ("".join(parts) + f"--{boundary}--\r\n").encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


def post_fixture(url: str, fixture: dict[str, Any]) -> httpx.Response:
    """Post the fixture as its platform does (a browser's form post: no Accept header)."""
    headers = {"User-Agent": fixture.get("user_agent", "Mozilla/5.0 (fixture)")}
    kind = fixture["content_type"]
    if kind == "json":
        return httpx.post(url, json=fixture["body"], headers=headers)
    if kind == "urlencoded":
        return httpx.post(url, data=dict(fixture["fields"]), headers=headers)
    body, content_type = multipart(fixture["fields"])
    return httpx.post(url, content=body, headers={**headers, "Content-Type": content_type})


def submissions(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/submissions", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def platforms(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RexServer, Receiver]]:
    """One Rex (per backend) and one receiver of contact.created for every platform
    fixture: each fixture's lead has its own address, so its contact, event and submission
    are told apart without a server each (dozens of fixtures, two backends)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('platforms')}/rex.db"
    else:
        url = request.getfixturevalue("postgres_url")
        truncate_all(url)
    with Receiver() as receiver, serve_rex(make_settings(url)) as server:
        with server.client() as client:
            hook = client.post(
                "/webhooks", json={"url": receiver.url(), "events": ["contact.created"]}
            )
            assert hook.status_code == 201, hook.text
        yield server, receiver


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_platform_fixture_becomes_a_contact(
    platforms: tuple[RexServer, Receiver], path: Path
) -> None:
    rex, receiver = platforms
    fixture = load(path)
    assert fixture["source"].startswith("https://")
    expect = fixture["expect"]
    with rex.client() as client:
        url, form_id = f"{rex.url}/capture", None
        if "field_map" in fixture:
            form = client.post(
                "/forms", json={"name": path.stem, "field_map": fixture["field_map"]}
            )
            assert form.status_code == 201, form.text
            url, form_id = form.json()["data"]["capture_url"], form.json()["data"]["id"]

        response = post_fixture(url, fixture)

        assert response.status_code in (200, 201, 303), response.text
        [delivered] = wait_until(
            lambda: [r for r in receiver.requests if r.json()["data"]["email"] == expect["email"]],
            timeout=30,
        )
        event = delivered.json()
        assert event["event"] == "contact.created"
        contact = event["data"]
        assert (contact["first_name"], contact["last_name"]) == (
            expect["first_name"],
            expect["last_name"],
        )
        [submission] = [
            s
            for s in submissions(client, status="accepted", limit="100")
            if s["contact_id"] == contact["id"]
        ]
        assert submission["form_id"] == form_id
        assert submission["shape"] == expect["shape"]
        if expect["shape"]:
            assert contact["source"] == expect["shape"]  # the fixtures carry no source
        assert submission["raw_body"]


def test_the_seed_body_is_taken_exactly_as_before(rex: RexServer) -> None:
    seed = {
        "email": "jane@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "source": "organic",
        "metadata": {"utm_source": "google", "utm_campaign": "spring-launch"},
    }
    response = httpx.post(f"{rex.url}/capture", json=seed)
    assert response.status_code == 201
    data = response.json()["data"]
    assert (data["email"], data["first_name"], data["source"]) == (
        "jane@example.com",
        "Jane",
        "organic",
    )
    with rex.client() as client:
        [submission] = submissions(client)
    assert submission["shape"] is None
    assert submission["fields"] == seed


# -- honeypots --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "as_json"),
    [
        ({"email": "bot1@example.com", "first_name": "Bot", "_gotcha": "x"}, True),
        ({"email": "bot2@example.com", "name": "Bot", "bot-field": "x"}, False),
        ({"EMAIL": "bot3@example.com", "b_0123abcd_89ef0123": "x"}, False),
        ({"email": "bot4@example.com", "website": "http://spam.example"}, True),
    ],
    ids=["_gotcha", "netlify-bot-field", "mailchimp-b_hex_hex", "form-honeypot_fields"],
)
def test_a_filled_honeypot_is_spam_answered_like_a_success(
    rex: RexServer, body: dict[str, str], as_json: bool
) -> None:
    with Receiver() as receiver, rex.client() as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
        form = client.post("/forms", json={"name": "f", "honeypot_fields": ["website"]})
        url = form.json()["data"]["capture_url"]
        send = (
            (lambda b: httpx.post(url, json=b))
            if as_json
            else (lambda b: httpx.post(url, data=b, headers=JSON_ACCEPT))
        )
        caught = send(body)
        real = send({k: v for k, v in body.items() if "@" in v} | {"note": "human"})

        assert caught.status_code == real.status_code == 201
        assert set(caught.json()["data"]) == set(real.json()["data"])
        receiver.wait_for(1)
        time.sleep(0.5)  # a contact.created for the bot would have arrived by now
        spam = submissions(client, status="spam")
        assert len(spam) == 1 and spam[0]["contact_id"] is None
        assert "honeypot" in spam[0]["reason"]
        assert len(receiver.requests) == 1  # the human's contact.created only
    [row] = sql(rex.database_url, "SELECT count(*) AS n FROM contacts")
    assert row.n == 1


# -- errors that say what arrived -------------------------------------------------------------


def test_no_email_is_a_422_naming_the_fields_received(rex: RexServer) -> None:
    response = httpx.post(
        f"{rex.url}/capture", data={"EMAIL": "", "FNAME": "Ada", "LNAME": "L"}, headers=JSON_ACCEPT
    )
    assert response.status_code == 422
    message = response.json()["error"]["message"]
    assert message == "no email field found; received: FNAME, LNAME"
    with rex.client() as client:
        [rejected] = submissions(client, status="rejected")
    assert rejected["reason"] == message
    assert rejected["fields"]["FNAME"] == "Ada"


def test_a_browser_gets_a_page_with_a_link_back_to_an_allowed_origin(rex: RexServer) -> None:
    with rex.client() as client:
        client.patch("/workspace", json={"allowed_origins": ["https://www.acme.test"]})
    page = "https://www.acme.test/contact?x=1"
    allowed = httpx.post(
        f"{rex.url}/capture",
        data={"FNAME": "Ada"},
        headers={"Accept": "text/html", "Referer": page},
    )
    other = httpx.post(
        f"{rex.url}/capture",
        data={"FNAME": "Ada"},
        headers={"Accept": "text/html", "Referer": "https://evil.test/x"},
    )
    assert allowed.status_code == other.status_code == 422
    assert allowed.headers["content-type"].startswith("text/html")
    assert "did not include an email address" in allowed.text
    assert 'href="https://www.acme.test/contact?x=1"' in allowed.text
    assert "evil.test" not in other.text


def test_refused_submissions_log_one_line_without_values(
    rex: RexServer, capsys: pytest.CaptureFixture[str]
) -> None:
    httpx.post(f"{rex.url}/capture", json={"FNAME": "Secretvalue"})
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if "capture_refused" in line]
    assert len(lines) == 1
    assert "FNAME" in lines[0] and "Secretvalue" not in lines[0]


# -- forms: mapping, reprocess ----------------------------------------------------------------


def test_form_crud_and_field_map_paths(rex: RexServer) -> None:
    with rex.client() as client:
        created = client.post(
            "/forms",
            json={
                "name": "Calendly",
                "field_map": {
                    "email": "payload.invitee.email",
                    "first_name": "answers.0.text",
                    "last_name": "q3_name[last]",
                    "metadata.plan": "PLAN",
                },
                "captcha": {"provider": "turnstile", "secret": "s3cret"},
            },
        )
        assert created.status_code == 201, created.text
        form = created.json()["data"]
        assert form["id"].startswith("frm_")
        assert form["capture_url"] == f"{rex.url}/capture/{form['id']}"
        assert "secret" not in json.dumps(form)
        assert client.get(f"/forms/{form['id']}").json()["data"]["name"] == "Calendly"
        assert [f["id"] for f in client.get("/forms").json()["data"]] == [form["id"]]
        patched = client.patch(f"/forms/{form['id']}", json={"captcha": None, "name": "Cal"})
        assert patched.json()["data"]["captcha"] is None
        body = {
            "payload": {"invitee": {"email": "mapped@example.com"}},
            "answers": [{"text": "Mapped"}],
            "q3_name": {"last": "Person"},
            "plan": "pro",
        }
        response = httpx.post(form["capture_url"], json=body)
        assert response.status_code == 201, response.text
        contact = response.json()["data"]
        assert (contact["email"], contact["first_name"], contact["last_name"]) == (
            "mapped@example.com",
            "Mapped",
            "Person",
        )
        [stored] = client.get("/contacts").json()["data"]
        assert stored["metadata"]["plan"] == "pro"
        assert client.post(f"/forms/{form['id']}", json={}).status_code == 405
        bad = client.post("/forms", json={"name": "x", "field_map": {"nope": "a"}})
        assert bad.status_code == 422
        assert client.delete(f"/forms/{form['id']}").status_code == 200
        assert httpx.post(form["capture_url"], json=body).status_code == 404


def test_reprocess_applies_the_forms_current_mapping(rex: RexServer) -> None:
    with Receiver() as receiver, rex.client() as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": ["contact.created"]})
        form = client.post("/forms", json={"name": "Odd tool"}).json()["data"]
        body = {"people": ["lost@example.com", "other@example.com"], "who": "Lost Lead"}
        refused = httpx.post(form["capture_url"], json=body)
        assert refused.status_code == 422
        [rejected] = submissions(client, status="rejected", form_id=form["id"])

        client.patch(
            f"/forms/{form['id']}", json={"field_map": {"email": "people.0", "name": "who"}}
        )
        again = client.post(f"/submissions/{rejected['id']}/reprocess")

        assert again.status_code == 200, again.text
        result = again.json()["data"]
        assert result["status"] == "accepted" and result["reason"] is None
        [event] = receiver.wait_for(1)
        assert event.json()["data"]["email"] == "lost@example.com"
        assert event.json()["data"]["last_name"] == "Lead"
        assert result["contact_id"] == event.json()["data"]["id"]
        assert client.get(f"/submissions/{rejected['id']}").json()["data"]["status"] == "accepted"


def test_submissions_pages_and_filters(rex: RexServer) -> None:
    for i in range(3):
        httpx.post(f"{rex.url}/capture", json={"email": f"p{i}@example.com"})
    httpx.post(f"{rex.url}/capture", json={"nothing": "here"})
    with rex.client() as client:
        first = client.get("/submissions", params={"limit": 2}).json()
        second = client.get(
            "/submissions", params={"limit": 2, "cursor": first["next_cursor"]}
        ).json()
        ids = [s["id"] for s in first["data"] + second["data"]]
        assert len(set(ids)) == 4 and second["next_cursor"] is None
        assert len(submissions(client, status="accepted")) == 3
        assert len(submissions(client, since="2999-01-01T00:00:00Z")) == 0
        assert client.get("/submissions/sub_01JAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404


# -- CAPTCHA ----------------------------------------------------------------------------------

PROVIDERS = [
    ("turnstile", "cf-turnstile-response", "turnstile_verify_url"),
    ("hcaptcha", "h-captcha-response", "hcaptcha_verify_url"),
    ("recaptcha_v2", "g-recaptcha-response", "recaptcha_verify_url"),
    ("recaptcha_v3", "g-recaptcha-response", "recaptcha_verify_url"),
]


@pytest.mark.parametrize(("provider", "token_field", "setting"), PROVIDERS)
def test_captcha_pass_fail_and_provider_down(
    database_url: str, provider: str, token_field: str, setting: str
) -> None:
    with Receiver() as verifier:
        down = f"http://127.0.0.1:{free_port()}/siteverify"
        with serve_rex(
            make_settings(database_url, **{setting: verifier.url("/siteverify")})
        ) as rex:
            with rex.client() as client:
                captcha = {"provider": provider, "secret": "form-secret", "min_score": 0.5}
                form = client.post("/forms", json={"name": "c", "captcha": captcha}).json()["data"]
            lead = {"email": "human@example.com", token_field: "tok-good"}

            verifier.respond_with(Respond(200, {"success": True, "score": 0.9}))
            passed = httpx.post(form["capture_url"], data=lead, headers=JSON_ACCEPT)
            assert passed.status_code == 201, passed.text
            [check] = verifier.wait_for(1)
            assert "secret=form-secret" in check.text and "response=tok-good" in check.text

            failed_answer = {"success": provider == "recaptcha_v3", "score": 0.1}
            verifier.respond_with(Respond(200, failed_answer))
            failed = httpx.post(form["capture_url"], data=lead, headers=JSON_ACCEPT)
            missing = httpx.post(
                form["capture_url"], data={"email": "h@example.com"}, headers=JSON_ACCEPT
            )
            for refused in (failed, missing):
                assert refused.status_code == 403
                assert "complete the challenge" in refused.json()["error"]["message"]
            with rex.client() as client:
                assert len(submissions(client, status="spam")) == 2
        # The provider unreachable: the submission is kept as rejected, with the reason.
        with serve_rex(make_settings(database_url, **{setting: down})) as rex2:
            capture_url = f"{rex2.url}/capture/{form['id']}"
            unreachable = httpx.post(capture_url, data=lead, headers=JSON_ACCEPT)
            assert unreachable.status_code == 503
            with rex2.client() as client:
                [kept] = submissions(client, status="rejected")
            assert "unreachable" in kept["reason"]
            assert kept["fields"]["email"] == "human@example.com"


# -- new-lead emails --------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode())
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: on PostgreSQL, the session's database is also served by
    this module's shared Rex, whose worker (no SMTP configured) would claim the mail."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/rex.db"
        return
    admin: str = request.getfixturevalue("postgres_url")
    with temporary_postgres_database(admin) as url:
        migrate(url)
        yield url


def test_notify_emails_get_one_email_per_accepted_lead(
    own_database_url: str, smtp: tuple[Inbox, int]
) -> None:
    database_url = own_database_url
    inbox, port = smtp
    settings = make_settings(
        database_url, smtp_url=f"smtp://127.0.0.1:{port}", mail_from="Rex <rex@example.com>"
    )
    with serve_rex(settings) as rex, rex.client() as client:
        form = client.post(
            "/forms",
            json={"name": "Pricing", "notify_emails": ["sales@example.com", "ceo@example.com"]},
        ).json()["data"]
        answer = httpx.post(
            form["capture_url"],
            data={"your-email": "lead@example.com", "your-name": "Ada Lovelace", "msg": "Hi!"},
            headers=JSON_ACCEPT,
        )
        assert answer.status_code == 201
        httpx.post(form["capture_url"], data={"FNAME": "no email"}, headers=JSON_ACCEPT)
        wait_until(lambda: inbox.messages, timeout=60)
        time.sleep(0.5)
    [(sender, recipients, content)] = inbox.messages
    assert sender == "rex@example.com"
    assert sorted(recipients) == ["ceo@example.com", "sales@example.com"]
    assert "Subject: New lead from Pricing: Ada Lovelace <lead@example.com>" in content
    assert "msg: Hi!" in content


def test_a_mail_server_down_is_retried_not_lost(own_database_url: str) -> None:
    database_url = own_database_url
    inbox = Inbox()
    port = free_port()
    # Retries spread over ~30 s: the tests' default schedule (0.2 s, three times) could be
    # spent before a loaded machine has the SMTP server listening: the mail would fail for good.
    settings = make_settings(
        database_url,
        smtp_url=f"smtp://127.0.0.1:{port}",
        retry_schedule=(0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    )
    with serve_rex(settings) as rex, rex.client() as client:
        form = client.post(
            "/forms", json={"name": "F", "notify_emails": ["sales@example.com"]}
        ).json()["data"]
        answer = httpx.post(form["capture_url"], json={"email": "lead2@example.com"})
        assert answer.status_code == 201  # the capture never waits for the mail
        endpoint = form_endpoint(rex)
        wait_until(lambda: attempts(rex, endpoint) >= 1, timeout=60)
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            wait_until(lambda: inbox.messages, timeout=45)
        finally:
            controller.stop()
    assert attempts(rex, endpoint) >= 2


def test_a_forms_mail_endpoint_and_its_deliveries_are_not_webhooks(rex: RexServer) -> None:
    """The mailto: endpoint of a form's notify_emails is Rex's own (kind ``system``): not
    listed, read, edited or counted by /webhooks; its deliveries and the internal
    ``submission.accepted`` event are in no public list."""
    with Receiver() as receiver, rex.client() as client:
        hook = client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
        hook_id = hook.json()["data"]["id"]
        form = client.post(
            "/forms", json={"name": "F", "notify_emails": ["sales@example.com"]}
        ).json()["data"]
        answer = httpx.post(form["capture_url"], json={"email": "hidden@example.com"})
        assert answer.status_code == 201
        receiver.wait_for(1)
        mail = form_endpoint(rex)  # its delivery was queued with the lead

        assert [w["id"] for w in client.get("/webhooks").json()["data"]] == [hook_id]
        for method, path in (
            ("GET", f"/webhooks/{mail}"),
            ("PATCH", f"/webhooks/{mail}"),
            ("DELETE", f"/webhooks/{mail}"),
            ("GET", f"/webhooks/{mail}/deliveries"),
            ("POST", f"/webhooks/{mail}/test"),
        ):
            kwargs = {"json": {"enabled": False}} if method == "PATCH" else {}
            assert client.request(method, path, **kwargs).status_code == 404, (method, path)
        types = {e["event"] for e in client.get("/events").json()["data"]}
        assert "contact.created" in types and "submission.accepted" not in types
        shown = client.get("/deliveries").json()["data"]
        assert shown and all(d["endpoint_id"] == hook_id for d in shown)
        [internal] = sql(
            rex.database_url, "SELECT id FROM events WHERE type = 'submission.accepted'"
        )
        assert client.get(f"/events/{internal.id}").status_code == 404
        [row] = sql(rex.database_url, "SELECT kind FROM endpoints WHERE id = :e", e=mail)
        assert row.kind == "system"


def form_endpoint(rex: RexServer) -> str:
    [row] = sql(rex.database_url, "SELECT notify_endpoint_id FROM forms")
    return str(row.notify_endpoint_id)


def attempts(rex: RexServer, endpoint_id: str) -> int:
    rows = sql(
        rex.database_url,
        "SELECT count(*) AS n FROM attempts JOIN deliveries ON deliveries.id = attempts.delivery_id"
        " WHERE deliveries.endpoint_id = :e",
        e=endpoint_id,
    )
    return int(rows[0].n)


# -- any body: never a 5xx, exactly one submission --------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
)
_names = st.one_of(
    _text,
    st.sampled_from(
        ["email", "EMAIL", "your-email", "name", "FNAME", "_gotcha", "bot-field", "website",
         "data.json", "rawRequest", "payload", "fields", "field_data", "properties", "Name",
         "q3_name[first]", "a[0][b]"]
    ),
)  # fmt: skip
_tricky = st.sampled_from(
    ['{"email": "a@example.com", "name": "A B"}', "first = Ada\nlast = L", "[1, {}]", "{",
     "a@example.com"]
)  # fmt: skip
_scalars = st.one_of(
    _text, _tricky, st.integers(-(10**6), 10**6), st.booleans(), st.none(), st.just("a@example.com")
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_names, inner, max_size=5)
    ),
    max_leaves=20,
)


@st.composite
def any_body(draw: st.DrawFn) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["json", "urlencoded", "multipart", "text"]))
    if kind == "json":
        return json.dumps(draw(_json)).encode(), "application/json"
    pairs = draw(st.lists(st.tuples(_names, st.one_of(_text, _tricky)), max_size=8))
    if kind == "urlencoded":
        return httpx.QueryParams(pairs).__str__().encode(), "application/x-www-form-urlencoded"
    if kind == "multipart":
        return multipart([[n.replace('"', ""), v] for n, v in pairs])
    return draw(_text).encode(), "text/plain"


def test_any_body_is_answered_without_a_5xx_and_leaves_one_submission(rex: RexServer) -> None:
    with rex.client() as client:
        form = client.post(
            "/forms",
            json={
                "name": "any",
                "field_map": {"email": "a.0.b", "first_name": "q3_name[first]"},
                "honeypot_fields": ["website"],
            },
        ).json()["data"]
    paths = ["/capture", f"/capture/{form['id']}"]
    with httpx.Client(base_url=rex.url, timeout=30) as http:

        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            case=any_body(),
            accept=st.sampled_from(["application/json", "text/html", ""]),
            path=st.sampled_from(paths),
        )
        def check(case: tuple[bytes, str], accept: str, path: str) -> None:
            body, content_type = case
            before = count_submissions(rex)
            response = http.post(
                path, content=body, headers={"Content-Type": content_type, "Accept": accept}
            )
            assert response.status_code < 500, response.text
            assert (
                200 <= response.status_code < 300
                or response.status_code == 303
                or (400 <= response.status_code < 500)
            )
            assert count_submissions(rex) == before + 1, (response.status_code, body[:200])

        check()


def count_submissions(rex: RexServer) -> int:
    return int(sql(rex.database_url, "SELECT count(*) AS n FROM submissions")[0].n)


# -- a form's answers to browsers, CORS, retention --------------------------------------------


def test_a_forms_redirect_and_success_message(rex: RexServer) -> None:
    with rex.client() as client:
        client.patch("/workspace", json={"allowed_origins": ["https://www.acme.test"]})
        redirecting = client.post(
            "/forms", json={"name": "r", "redirect_url": "https://www.acme.test/thanks"}
        ).json()["data"]
        thanking = client.post(
            "/forms", json={"name": "t", "success_message": "We will call you <soon>."}
        ).json()["data"]
    lead = {"email": "browser@example.com"}
    moved = httpx.post(redirecting["capture_url"], data=lead, headers={"Accept": "text/html"})
    assert moved.status_code == 303
    assert moved.headers["location"] == "https://www.acme.test/thanks"
    page = httpx.post(thanking["capture_url"], data=lead, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "We will call you &lt;soon&gt;." in page.text
    preflight = httpx.options(
        thanking["capture_url"],
        headers={"Origin": "https://www.acme.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://www.acme.test"
    refused = httpx.options(
        thanking["capture_url"],
        headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403


def test_submissions_are_pruned_with_the_events_retention(database_url: str) -> None:
    import asyncio
    from datetime import timedelta

    from rex.db.engine import Database
    from rex.ids import utcnow
    from rex.worker.retention import prune_expired

    with serve_rex(make_settings(database_url, retention_days=0)) as rex:
        httpx.post(f"{rex.url}/capture", json={"email": "old@example.com"})
        httpx.post(f"{rex.url}/capture", json={"nothing": "here"})
    assert count_submissions(rex) == 2

    async def prune(days_later: int) -> None:
        db = Database(database_url, pool_size=1)
        try:
            now = utcnow() + timedelta(days=days_later)
            await prune_expired(db, retention_days=30, now=now, batch=1)
        finally:
            await db.close()

    asyncio.run(prune(29))
    assert count_submissions(rex) == 2
    asyncio.run(prune(31))
    assert count_submissions(rex) == 0
