"""GET/PATCH /workspace, and /capture landing in the workspace its host names."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support import RexServer, make_settings, serve_rex, sql

BASE = "example.test"


def test_get_workspace_shape(rex: RexServer) -> None:
    with rex.client() as client:
        response = client.get("/workspace")

    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"].startswith("ws_")
    assert {
        k: data[k] for k in ("slug", "allowed_origins", "redirect_url", "capture_rate_limit")
    } == {
        "slug": "default",
        "allowed_origins": [],
        "redirect_url": None,
        "capture_rate_limit": None,
    }
    assert data["created_at"].endswith("Z")


def test_patch_changes_only_what_is_sent_and_normalises_origins(rex: RexServer) -> None:
    with rex.client() as client:
        response = client.patch(
            "/workspace",
            json={
                "name": "Acme",
                "allowed_origins": ["HTTPS://WWW.Acme.test/", "https://www.acme.test:443", "*"],
                "redirect_url": "https://www.acme.test/thanks",
                "capture_rate_limit": "600 / Minute",
            },
        )
        again = client.patch("/workspace", json={"name": "Acme Inc"})

    assert response.status_code == 200, response.text
    data = again.json()["data"]
    assert data["name"] == "Acme Inc"
    assert data["allowed_origins"] == ["https://www.acme.test", "*"]
    assert data["redirect_url"] == "https://www.acme.test/thanks"
    assert data["capture_rate_limit"] == "600/minute"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allowed_origins": ["www.acme.test"]}, "allowed_origins.0"),
        ({"allowed_origins": ["https://a.test", "https://a.test/path"]}, "allowed_origins"),
        ({"allowed_origins": ["null"]}, "allowed_origins"),
        ({"allowed_origins": None}, None),
        ({"redirect_url": "/thanks"}, "redirect_url"),
        ({"redirect_url": "https://elsewhere.test/thanks"}, "redirect_url"),
        ({"capture_rate_limit": "lots"}, "capture_rate_limit"),
        ({"name": None}, None),
        ({"name": ""}, "name"),
        ({"slug": "other"}, None),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_settings_are_422_and_change_nothing(
    rex: RexServer, body: dict[str, object], field: str | None
) -> None:
    with rex.client() as client:
        before = client.get("/workspace").json()["data"]
        response = client.patch("/workspace", json=body)
        after = client.get("/workspace").json()["data"]

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["message"]
    if field:
        assert (error["field"] or "").startswith(field)
    assert after == before


def test_removing_the_redirects_origin_is_refused(rex: RexServer) -> None:
    with rex.client() as client:
        client.patch(
            "/workspace",
            json={"allowed_origins": ["https://a.test"], "redirect_url": "https://a.test/ok"},
        ).raise_for_status()
        before = client.get("/workspace").json()["data"]
        response = client.patch("/workspace", json={"allowed_origins": ["https://b.test"]})
        after = client.get("/workspace").json()["data"]

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "allowed_origins"
    assert after == before
    assert after["allowed_origins"] == ["https://a.test"]


def test_workspace_needs_a_key_and_shows_only_the_keys_own(rex: RexServer) -> None:
    assert httpx.get(f"{rex.url}/workspace").status_code == 401
    assert httpx.patch(f"{rex.url}/workspace", json={"name": "x"}).status_code == 401
    other_key = rex.key_for("globex")
    with rex.client(other_key) as other:
        other.patch("/workspace", json={"name": "Globex"}).raise_for_status()
        assert other.get("/workspace").json()["data"]["slug"] == "globex"
    with rex.client() as mine:
        assert mine.get("/workspace").json()["data"]["name"] == "Default workspace"


# -- workspaces by host -----------------------------------------------------------------------


@pytest.fixture
def multi(database_url: str) -> Iterator[RexServer]:
    with serve_rex(make_settings(database_url, base_domain=BASE)) as server:
        yield server


def capture_on(rex: RexServer, host: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{rex.url}/capture", json=body, headers={"Host": host})


def emails(rex: RexServer, key: str) -> list[str]:
    with rex.client(key) as client:
        return [c["email"] for c in client.get("/contacts").json()["data"]]


def test_capture_lands_in_the_workspace_its_host_names(multi: RexServer) -> None:
    acme, globex = multi.key_for("acme"), multi.key_for("globex")

    to_acme = capture_on(multi, f"acme.{BASE}", {"email": "a@example.com"})
    # Nothing in the body can choose another workspace.
    sneaky = capture_on(
        multi, f"ACME.{BASE}:8080", {"email": "b@example.com", "workspace": "globex"}
    )
    to_globex = capture_on(multi, f"globex.{BASE}", {"email": "g@example.com"})
    to_default = capture_on(multi, "127.0.0.1", {"email": "d@example.com"})

    assert [r.status_code for r in (to_acme, sneaky, to_globex, to_default)] == [201] * 4
    assert sorted(emails(multi, acme)) == ["a@example.com", "b@example.com"]
    assert emails(multi, globex) == ["g@example.com"]
    assert emails(multi, multi.key) == ["d@example.com"]


def test_localhost_and_the_bare_base_domain_land_in_default(multi: RexServer) -> None:
    acme = multi.key_for("acme")
    hosts = ["localhost", "LOCALHOST:8000", BASE, f"{BASE}:8080", f"{BASE}.", "[::1]:8000"]
    for i, host in enumerate(hosts):
        response = capture_on(multi, host, {"email": f"d{i}@example.com"})
        assert response.status_code == 201, (host, response.text)
    assert sorted(emails(multi, multi.key)) == [f"d{i}@example.com" for i in range(len(hosts))]
    assert emails(multi, acme) == []


def test_unknown_or_nested_workspace_hosts_are_404(multi: RexServer) -> None:
    multi.key_for("acme")
    unknown = capture_on(multi, f"nope.{BASE}", {"email": "a@example.com"})
    nested = capture_on(multi, f"x.acme.{BASE}", {"email": "a@example.com"})

    for response in (unknown, nested):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found"
    assert sql(multi.database_url, "SELECT count(*) AS n FROM contacts")[0].n == 0


def test_each_workspace_has_its_own_origins(multi: RexServer) -> None:
    with multi.client(multi.key_for("acme")) as acme:
        acme.patch("/workspace", json={"allowed_origins": ["https://acme.test"]}).raise_for_status()

    def preflight(host: str) -> httpx.Response:
        return httpx.options(
            f"{multi.url}/capture",
            headers={
                "Host": host,
                "Origin": "https://acme.test",
                "Access-Control-Request-Method": "POST",
            },
        )

    assert preflight(f"acme.{BASE}").status_code == 204
    multi.key_for("globex")
    assert preflight(f"globex.{BASE}").status_code == 403
