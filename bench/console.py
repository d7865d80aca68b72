"""The console at real sizes: seed a workspace with N contacts and M deliveries (bulk
inserts), then time what each console page costs the server, p50/p95 over R requests.

    python -m bench console --backend sqlite --contacts 100000 --deliveries 1000000
    python -m bench console --backend postgres --contacts 20000 --deliveries 200000   # quicker

Two measures per page: ``queries`` (the page's reads through the functions its route calls,
in-process: what the page costs the database) and, when the console's routes are mounted,
``http`` (the whole server time of ``GET`` through the ASGI app, signed in as an owner:
queries, templates and middleware: every page, Leads, Contact, Deals board and Tasks included,
whose reads live in their routes). Target: p95 <= 50 ms.

Rows are spread over 30 days with ids carrying their creation time (as Rex makes them); ten
endpoints, one event per ten deliveries, one attempt per delivery of the last two days and per
failed delivery; one deal in the default pipeline and one task per ``DEAL_EVERY`` contacts
(the tasks' due dates spread over 30 days either side of now, a tenth of them done). Every
loop is bounded by its count.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from ulid import ULID

TARGET_P95_MS = 50.0
BATCH = 5000
ENDPOINTS = 10
SOURCES = ("google", "newsletter", "linkedin", "direct", "partner", None)
STAGES = ("lead", "lead", "lead", "mql", "sql", "customer")
DEAL_EVERY = 5  # one deal and one task per this many contacts


def _id(prefix: str, moment: datetime, rng: random.Random) -> str:
    millis = int(moment.timestamp() * 1000)
    return f"{prefix}_{ULID.from_bytes(millis.to_bytes(6, 'big') + rng.randbytes(10))}"


async def _insert(conn: Any, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        await conn.execute(sa.insert(table), rows[start : start + BATCH])


async def seed(database_url: str, *, contacts: int, deliveries: int) -> dict[str, Any]:
    """Seed the default workspace; returns what the timing needs (ids to open)."""
    from rex.db.engine import Database
    from rex.db.schema import attempts, endpoints, events
    from rex.db.schema import contacts as contacts_t
    from rex.db.schema import deals as deals_t
    from rex.db.schema import deliveries as deliveries_t
    from rex.db.schema import tasks as tasks_t
    from rex.pipelines.service import ensure_default
    from rex.webhooks.schemas import EndpointCreate
    from rex.webhooks.service import create as create_endpoint
    from rex.worker.ssrf import DestinationPolicy
    from rex.workspaces import service as workspaces

    rng = random.Random(14)
    now = datetime.now(UTC)
    span = timedelta(days=30).total_seconds()
    db = Database(database_url)
    await db.migrate()
    started = time.monotonic()
    async with db.transaction() as conn:
        workspace, _ = await workspaces.ensure_default_workspace(conn)
        pipeline = await ensure_default(conn, workspace.id, now)
        endpoint_ids = []
        for index in range(ENDPOINTS):
            body = EndpointCreate(url=f"https://hooks{index}.example.com/rex", events=["*"])
            created = await create_endpoint(conn, workspace.id, body, DestinationPolicy())
            endpoint_ids.append(created["id"])
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == endpoint_ids[-1])
            .values(enabled=False, disabled_reason="bench: disabled")
        )
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == endpoint_ids[-2])
            .values(failing_since=now - timedelta(hours=2))
        )
    ws = workspace.id

    # Times in increasing order, as rows arrive in a real Rex (appended in id order: the
    # rows of one day sit together on disk, as they would).
    def moments(count: int) -> list[datetime]:
        return sorted(now - timedelta(seconds=rng.random() * span) for _ in range(count))

    contact_times = moments(contacts)

    stages = [(stage.name, stage.status) for stage in pipeline.stages]
    sample_contact = None
    # Contacts, with a deal and a task for every DEAL_EVERY-th, in chunks of one transaction.
    for start in range(0, contacts, BATCH * 4):
        rows: list[dict[str, Any]] = []
        deal_rows: list[dict[str, Any]] = []
        task_rows: list[dict[str, Any]] = []
        for index in range(start, min(contacts, start + BATCH * 4)):
            at = contact_times[index]
            contact_id = _id("cont", at, rng)
            rows.append(
                {
                    "id": contact_id,
                    "workspace_id": ws,
                    "email": f"lead{index}@example.com",
                    "first_name": f"Lead {index}",
                    "stage": rng.choice(STAGES),
                    "source": rng.choice(SOURCES),
                    "metadata": {},
                    "created_at": at,
                    "updated_at": at,
                }
            )
            if index % DEAL_EVERY:
                continue
            sample_contact = contact_id
            stage, status = rng.choice(stages)
            deal_id = _id("deal", at, rng)
            deal_rows.append(
                {
                    "id": deal_id,
                    "workspace_id": ws,
                    "name": f"Deal {index}",
                    "amount": rng.randint(1, 500) * 10000,
                    "currency": rng.choice(("EUR", "USD")),
                    "pipeline_id": pipeline.id,
                    "stage": stage,
                    "status": status,
                    "contact_id": contact_id,
                    "metadata": {},
                    "created_at": at,
                    "updated_at": at,
                }
            )
            done = rng.random() < 0.1
            task_rows.append(
                {
                    "id": _id("task", at, rng),
                    "workspace_id": ws,
                    "title": f"Call lead {index}",
                    "due_at": now + timedelta(seconds=(rng.random() - 0.5) * 2 * span),
                    "status": "done" if done else "todo",
                    "completed_at": at if done else None,
                    "contact_id": contact_id,
                    "deal_id": deal_id,
                    "created_at": at,
                    "updated_at": at,
                }
            )
        async with db.transaction() as conn:
            await _insert(conn, contacts_t, rows)
            await _insert(conn, deals_t, deal_rows)
            await _insert(conn, tasks_t, task_rows)
    # Events (one per ENDPOINTS deliveries), their deliveries and attempts.
    event_count = max(1, deliveries // ENDPOINTS)
    event_times = moments(event_count)
    sample_delivery = None
    per_chunk = 2000
    recent = now - timedelta(days=2)
    for start in range(0, event_count, per_chunk):
        event_rows: list[dict[str, Any]] = []
        delivery_rows: list[dict[str, Any]] = []
        attempt_rows: list[dict[str, Any]] = []
        for index in range(start, min(event_count, start + per_chunk)):
            at = event_times[index]
            event_id = _id("evt", at, rng)
            payload = (
                f'{{"id":"{event_id}","event":"contact.created","timestamp":"{at.isoformat()}","data":{{"email":'
                '"lead@example.com"}}'
            )
            event_rows.append(
                {
                    "id": event_id,
                    "workspace_id": ws,
                    "type": "contact.created",
                    "object_id": "cont_x",
                    "payload": payload,
                    "created_at": at,
                }
            )
            for endpoint_id in endpoint_ids:
                if len(delivery_rows) + start * ENDPOINTS >= deliveries:
                    break
                roll = rng.random()
                status = "delivered" if roll < 0.93 else "failed" if roll < 0.98 else "pending"
                delivery_id = _id("dlv", at, rng)
                sent = at + timedelta(seconds=rng.random() * 3)
                tried = status != "pending" or rng.random() < 0.5
                delivery_rows.append(
                    {
                        "id": delivery_id,
                        "workspace_id": ws,
                        "endpoint_id": endpoint_id,
                        "event_id": event_id,
                        "event_type": "contact.created",
                        "status": status,
                        "attempt_count": 1 if tried else 0,
                        "next_attempt_at": sent if status == "pending" else None,
                        "last_attempt_at": sent if tried else None,
                        "created_at": at,
                        "updated_at": sent,
                    }
                )
                if tried and (at >= recent or status == "failed"):
                    ok = status == "delivered"
                    attempt_rows.append(
                        {
                            "id": _id("att", sent, rng),
                            "delivery_id": delivery_id,
                            "at": sent,
                            "status_code": 200 if ok else 500,
                            "error": None,
                            "latency_ms": rng.randint(5, 300),
                            "response_excerpt": "ok" if ok else "Internal Server Error",
                        }
                    )
                    if sample_delivery is None and ok:
                        sample_delivery = delivery_id
        async with db.transaction() as conn:
            await _insert(conn, events, event_rows)
            await _insert(conn, deliveries_t, delivery_rows)
            await _insert(conn, attempts, attempt_rows)
    if db.dialect == "postgresql":
        async with db.transaction() as conn:
            await conn.execute(sa.text("ANALYZE"))
    else:
        async with db.transaction() as conn:
            await conn.execute(sa.text("ANALYZE"))
    seconds = time.monotonic() - started
    async with db.read() as conn:
        any_delivery = (await conn.execute(sa.select(sa.func.max(deliveries_t.c.id)))).scalar_one()
        any_event = (await conn.execute(sa.select(sa.func.max(events.c.id)))).scalar_one()
    await db.close()
    return {
        "workspace_id": ws,
        "endpoint_id": endpoint_ids[0],
        "contact_id": sample_contact or "",
        "delivery_id": sample_delivery or any_delivery,
        "event_id": any_event,
        "seed_seconds": round(seconds, 1),
    }


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(p95 * 1000, 2),
    }


def page_reads() -> dict[str, Callable[[Any, dict[str, Any], datetime], Awaitable[Any]]]:
    """Each page's reads, as its route makes them (rex.console.ops_pages)."""
    from rex.console import ops_pages as p
    from rex.ops import keys

    ws = "workspace_id"
    return {
        "home": lambda c, s, now: p.home(c, s[ws], now=now),
        "webhooks": lambda c, s, now: p.webhooks(c, s[ws], now=now, cursor=None),
        "endpoint": lambda c, s, now: p.endpoint(c, s[ws], s["endpoint_id"], now=now),
        "deliveries": lambda c, s, now: p.delivery_log(
            c, s[ws], status=None, event_type=None, endpoint_id=None, cursor=None
        ),
        "deliveries?failed": lambda c, s, now: p.delivery_log(
            c, s[ws], status="failed", event_type=None, endpoint_id=None, cursor=None
        ),
        "delivery": lambda c, s, now: p.delivery_detail(c, s[ws], s["delivery_id"], now=now),
        "events": lambda c, s, now: p.events_log(
            c, s[ws], type=None, object_id=None, since=None, until=None, cursor=None
        ),
        "event": lambda c, s, now: p.event_detail(c, s[ws], s["event_id"]),
        "settings (keys)": lambda c, s, now: keys.list_keys(c, s[ws]),
    }


async def time_queries(database_url: str, seeded: dict[str, Any], requests: int) -> dict[str, Any]:
    """Each page's reads, ``requests`` times each."""
    from rex.db.engine import Database

    db = Database(database_url)
    results: dict[str, Any] = {}
    try:
        for name, read in page_reads().items():
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                async with db.read() as conn:
                    await read(conn, seeded, datetime.now(UTC))
                samples.append(time.perf_counter() - started)
            results[name] = _figures(samples)
    finally:
        await db.close()
    return results


HTTP_PAGES = {
    "home": "/console",
    "leads": "/console/leads",
    "leads?search": "/console/leads?q=lead99",
    "leads?stage": "/console/leads?stage=customer&source=partner",
    "contact": "/console/contacts/{contact_id}",
    "deals board": "/console/deals",
    "tasks": "/console/tasks",
    "tasks?contact": "/console/tasks?contact={contact_id}",
    "webhooks": "/console/webhooks",
    "endpoint": "/console/webhooks/{endpoint_id}",
    "deliveries": "/console/deliveries",
    "deliveries?failed": "/console/deliveries?status=failed",
    "delivery": "/console/deliveries/{delivery_id}",
    "events": "/console/events",
    "event": "/console/events/{event_id}",
    "settings": "/console/settings",
}


def time_http(database_url: str, seeded: dict[str, Any], requests: int) -> dict[str, Any]:
    """``GET`` of each console page from a real ``rex serve --no-worker`` on 127.0.0.1,
    signed in as an owner (made with ``rex users create``): the server's time plus one
    loopback round trip."""
    import os
    import re
    import subprocess
    import sys

    import httpx
    from tests.support import free_port

    rex = str(Path(sys.executable).with_name("rex"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REX_")}
    env.update(REX_DATABASE_URL=database_url, REX_LOG_LEVEL="warning")
    email = "bench-owner@example.com"
    made = subprocess.run(
        [rex, "users", "create", email, "--role", "owner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    password = made.stdout.strip().splitlines()[-1]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [rex, "serve", "--no-worker", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        try:
            with httpx.Client(base_url=url, timeout=60, follow_redirects=True) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline or server.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"rex serve did not start: {log.read()[-2000:]!r}")
                    time.sleep(0.2)
                form = client.get("/console/login").text
                token = re.search(r'name="csrf_token" value="([^"]+)"', form)
                fields = {"email": email, "password": password}
                if token:
                    fields["csrf_token"] = token.group(1)
                signed_in = client.post("/console/login", data=fields)
                if "/console/login" in str(signed_in.url):
                    raise SystemExit("could not sign in to the console")
                results: dict[str, Any] = {}
                for name, path in HTTP_PAGES.items():
                    target = path.format(**seeded)
                    samples = []
                    for _ in range(requests):
                        started = time.perf_counter()
                        response = client.get(target)
                        samples.append(time.perf_counter() - started)
                        if response.status_code != 200:
                            raise SystemExit(f"{target}: {response.status_code}")
                    results[name] = _figures(samples)
                return results
        finally:
            server.terminate()
            server.wait(30)


def run_console(
    *, backend: str, contacts: int, deliveries: int, requests: int, postgres_url: str
) -> dict[str, Any]:
    if backend == "sqlite":
        directory = tempfile.mkdtemp(prefix="rex-bench-console-")
        url = f"sqlite:///{Path(directory) / 'rex.db'}"
    else:
        from tests.support import temporary_postgres_database

        manager = temporary_postgres_database(postgres_url)
        url = manager.__enter__()

    async def main() -> dict[str, Any]:
        seeded = await seed(url, contacts=contacts, deliveries=deliveries)
        reads = await time_queries(url, seeded, requests)
        return {"seeded": seeded, "queries": reads}

    try:
        report = asyncio.run(main())
        report["http"] = time_http(url, report["seeded"], requests)
    finally:
        if backend == "sqlite":
            shutil.rmtree(directory, ignore_errors=True)
        else:
            manager.__exit__(None, None, None)
    report.update(backend=backend, contacts=contacts, deliveries=deliveries, requests=requests)
    return report


def print_console_report(report: dict[str, Any]) -> None:
    print(
        f"console benchmark: {report['backend']}, {report['contacts']} contacts, "
        f"{report['deliveries']} deliveries (seeded in {report['seeded']['seed_seconds']} s), "
        f"{report['requests']} requests per page; target p95 <= {TARGET_P95_MS:g} ms"
    )
    for kind in ("queries", "http"):
        if not report[kind]:
            continue
        print(f"\n  {kind}:")
        print(f"  {'page':<22}{'p50 ms':>10}{'p95 ms':>10}  target")
        for name, figures in report[kind].items():
            met = "met" if figures["p95_ms"] <= TARGET_P95_MS else "MISSED"
            print(f"  {name:<22}{figures['p50_ms']:>10}{figures['p95_ms']:>10}  {met}")
