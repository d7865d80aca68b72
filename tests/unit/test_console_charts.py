"""The console's SVG charts and its rebuilt delivery requests, without a database."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from rex._signing import sign
from rex.console.charts import leads_chart, series_table, stacked_bars
from rex.console.ops_queries import Series, id_floor, percentile
from rex.console.sent import rebuild
from rex.webhooks.service import ROTATION_OVERLAP

SVG = "{http://www.w3.org/2000/svg}"
EVIL = '<img src=x onerror=alert(1)>&"'


def _series(keys: list[str], labels: list[str], counts: dict[str, list[int]]) -> Series:
    return Series(labels=labels, keys=keys, counts=counts)


def test_chart_is_an_accessible_image_with_its_figures_in_words() -> None:
    series = _series(["web", "ads"], ["d1", "d2"], {"web": [2, 0], "ads": [1, 4]})
    svg = stacked_bars(series, chart_id="c", title="Leads", unit="leads", period="lately")
    root = ET.fromstring(svg)  # well-formed XML
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "c-title c-desc"
    assert root.find(f"{SVG}title").text == "Leads"  # type: ignore[union-attr]
    desc = root.find(f"{SVG}desc").text  # type: ignore[union-attr]
    assert desc == "7 leads lately (web: 2, ads: 5); the most, 4, in d2."
    bars = root.findall(f"{SVG}rect/{SVG}title")
    assert sorted(b.text or "" for b in bars) == ["d1: ads 1", "d1: web 2", "d2: ads 4"]
    assert "style=" not in svg and "<script" not in svg  # nothing a strict CSP refuses


def test_every_label_is_escaped() -> None:
    series = _series([EVIL], [EVIL], {EVIL: [3]})
    svg = stacked_bars(series, chart_id=EVIL, title=EVIL, unit="x", period="y")
    table = series_table(series, caption=EVIL, label_header=EVIL)
    for html in (svg, table):
        assert "<img" not in html and 'onerror=alert(1)>&"' not in html
        assert "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;" in html
    ET.fromstring(svg)
    ET.fromstring(table)
    assert svg.__html__() == svg  # inserted as is by Jinja2's autoescape


def test_empty_chart_says_so() -> None:
    labels = [f"2026-03-{d:02d}" for d in range(1, 31)]
    svg = leads_chart(Series(labels=labels, keys=[], counts={}))
    assert "No leads in the last 30 days." in svg
    ET.fromstring(svg)


def test_table_has_one_row_per_bucket_and_totals() -> None:
    series = _series(["a", "b"], ["h1", "h2"], {"a": [1, 2], "b": [3, 0]})
    table = ET.fromstring(series_table(series, caption="C", label_header="Hour"))
    rows = table.findall("tbody/tr")
    assert [[c.text for c in row] for row in rows] == [["h1", "1", "3", "4"], ["h2", "2", "0", "2"]]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.95) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50.0, 95.0)


def test_id_floor_sorts_before_every_id_of_that_millisecond() -> None:
    moment = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
    floor = id_floor("dlv", moment)
    assert floor.startswith("dlv_") and len(floor) == 30
    assert floor < id_floor("dlv", moment + timedelta(milliseconds=1))
    assert floor > id_floor("dlv", moment - timedelta(milliseconds=1))


def _endpoint(**kw: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "id": "wh_1",
        "url": "http://127.0.0.1:8123/hook?x=1",
        "secret": "whsec_new",
        "previous_secret": None,
        "previous_secret_expires_at": None,
    }
    values.update(kw)
    return SimpleNamespace(**values)


def test_rebuilt_request_is_what_the_worker_signs() -> None:
    at = datetime(2026, 3, 16, 12, 0, 5, 123000, tzinfo=UTC)
    payload = '{"id":"evt_1","event":"contact.created","data":{"name":"é"}}'
    sent = rebuild(
        delivery_id="dlv_1",
        event_id="evt_1",
        event_type="contact.created",
        payload=payload,
        endpoint=_endpoint(),
        at=at,
        now=at + timedelta(days=1),
    )
    assert sent.exact and sent.timestamp == int(at.timestamp())
    assert sent.body == payload
    assert sent.headers["X-Rex-Signature"] == sign(payload.encode(), ("whsec_new",), sent.timestamp)
    assert sent.headers["Host"] == "127.0.0.1:8123"
    assert sent.headers["Content-Length"] == str(len(payload.encode()))
    assert sent.headers["X-Rex-Delivery-Id"] == "dlv_1"
    assert "whsec_new" not in str(sent.headers)


def test_rebuilt_signatures_follow_secret_rotation() -> None:
    rotated = datetime(2026, 3, 16, 12, 0, tzinfo=UTC)
    endpoint = _endpoint(
        previous_secret="whsec_old", previous_secret_expires_at=rotated + ROTATION_OVERLAP
    )

    def at(moment: datetime) -> tuple[str, bool]:
        sent = rebuild(
            delivery_id="dlv_1",
            event_id="evt_1",
            event_type="t",
            payload="{}",
            endpoint=endpoint,
            at=moment,
            now=moment,
        )
        return sent.headers["X-Rex-Signature"], sent.exact

    ts = int((rotated + timedelta(hours=1)).timestamp())
    during = sign(b"{}", ("whsec_new", "whsec_old"), ts)
    assert at(rotated + timedelta(hours=1)) == (during, True)
    after = rotated + ROTATION_OVERLAP + timedelta(seconds=1)
    assert at(after) == (sign(b"{}", ("whsec_new",), int(after.timestamp())), True)
    before = rotated - timedelta(hours=1)
    assert at(before) == (sign(b"{}", ("whsec_old",), int(before.timestamp())), False)


def test_not_yet_sent_is_not_called_exact() -> None:
    now = datetime(2026, 3, 16, tzinfo=UTC)
    sent = rebuild(
        delivery_id="d",
        event_id="e",
        event_type="t",
        payload="{}",
        endpoint=_endpoint(),
        at=None,
        now=now,
    )
    assert not sent.exact and "Not sent yet" in sent.note


def test_embed_snippet_escapes_every_value_picked() -> None:
    from rex.console.snippet import SnippetOptions, embed_snippet

    snippet = embed_snippet(
        SnippetOptions(
            base_url="https://acme.rexgtm.com/",
            form_id="frm_1",
            fields=["first_name", "company", "bogus"],
            success_message='Thanks "friend" <b>',
            button="<Go>",
            consent_text='News & "offers"',
            next_url="https://www.acme.com/thanks?a=1&b=2",
            source="webinar",
        )
    )
    assert 'action="https://acme.rexgtm.com/capture/frm_1"' in snippet
    assert 'data-rex-success="Thanks &quot;friend&quot; &lt;b&gt;"' in snippet
    assert '<button type="submit">&lt;Go&gt;</button>' in snippet
    assert 'value="News &amp; &quot;offers&quot;"' in snippet
    assert 'value="https://www.acme.com/thanks?a=1&amp;b=2"' in snippet
    assert 'name="company"' in snippet and "bogus" not in snippet
    assert snippet.rstrip().endswith(
        '<script src="https://acme.rexgtm.com/embed.js" defer></script>'
    )
