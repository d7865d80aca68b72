"""A query parameter that takes one value, sent twice, is a 422 naming it, on every route.

``GET /contacts?email=a&email=b`` answered 200, filtered by ``b`` alone (found by
schemathesis). The rule is one dependency reading each route's own parameters
(``rex.api.query``), so this test walks the app's routes: a list route added later is
checked without a word here.
"""

from __future__ import annotations

import re

import httpx

from rex.api.query import scalar_query_names
from rex.api.routes import api_operations
from rex.app import create_app
from tests.support import RexServer, make_settings

LIST_ROUTES = {
    "/contacts", "/deals", "/tasks", "/pipelines", "/events", "/webhooks",
    "/webhooks/{endpoint_id}/deliveries", "/deliveries", "/listen/sessions", "/forms",
    "/submissions",
}  # fmt: skip


def test_a_repeated_scalar_query_parameter_is_a_422_naming_it_on_every_route(
    rex: RexServer,
) -> None:
    targets = []
    for op in api_operations(create_app(make_settings(rex.database_url))):
        if op.path.startswith("/console"):
            continue  # the console's HTML pages, not the API (their forms post one value)
        for method in sorted(op.methods & {"GET", "DELETE", "POST", "PATCH", "PUT"}):
            url = re.sub(r"{\w+(?::\w+)?}", "x_01", op.path)  # refused before any lookup
            targets += [(method, op.path, url, name) for name in scalar_query_names(op.route)]
    assert {path for _, path, _, _ in targets} >= LIST_ROUTES
    with rex.client() as client:
        for method, path, url, name in targets:
            answer = client.request(method, url, params=[(name, "a"), (name, "b")])
            assert answer.status_code == 422, (method, path, name, answer.text)
            error = answer.json()["error"]
            assert error["type"] == "invalid_request", (method, path, error)
            assert error["field"] == name, (method, path, error)
            assert name in error["message"] and "'a', 'b'" in error["message"], error
        # Sent once, the same filter filters; other parameters may repeat nothing.
        single = client.get("/contacts", params={"email": "nobody@example.com"})
        assert single.status_code == 200 and single.json()["data"] == []
        ok = client.get("/tasks", params=[("limit", "5"), ("status", "todo")])
        assert ok.status_code == 200, ok.text
        # Several repeated: the route's first parameter is named, and the envelope is one.
        both = client.get("/deals", params=[("status", "open")] * 2 + [("limit", "1")] * 3)
        assert both.json()["error"]["field"] == "limit"
    with httpx.Client(base_url=rex.url, timeout=30) as anonymous:
        # The API key is checked first: an anonymous caller learns nothing about parameters.
        assert anonymous.get("/contacts?email=a&email=b").status_code == 401
