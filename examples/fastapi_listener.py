"""A Rex webhook listener for FastAPI: the seeds' listener, done right.

Run it::

    pip install rexgtm uvicorn
    REX_WEBHOOK_SECRET=whsec_... uvicorn --factory fastapi_listener:create_app --port 3000

then point a subscription at ``http://<this host>:3000/webhooks/rex`` (or use
``rex listen --forward-to http://127.0.0.1:3000/webhooks/rex``).

What it does that the seeds' listener snippet does not (docs/receiving.md has
standalone listeners, in Node and Python, that do the same without this package):

1. **Verifies properly** with ``rex.construct_event``: over the raw body, with a
   timestamp tolerance (a captured request cannot be replayed later), trying every
   ``v1=`` in the header (so it keeps working while a secret is being rotated), and
   with a 4xx that says why instead of a 500 on a malformed header.
2. **Deduplicates on the event id.** Delivery is at-least-once: a retry after a
   timeout resends the same ``evt_...`` id. (Keying on ``data.id + event`` as the
   seeds' snippet does would also drop the second, genuine ``contact.updated`` of a
   contact.)
3. **Answers 2xx at once** and does the work after the response (FastAPI
   ``BackgroundTasks``), so a slow handler never becomes a timeout and a retry.

This example keeps seen ids in memory. In production, record the event id in your
database under a unique constraint, in the same transaction as the event's effects,
and put slow work on a durable queue: once you have answered 2xx, Rex will not send
that event again unless someone asks for it (``POST /deliveries/{id}/retry``).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request

import rex

log = logging.getLogger("rex_listener")

Event = dict[str, Any]
EventHandler = Callable[[Event], Awaitable[None]]


class SeenEvents:
    """Ids of accepted events, the oldest forgotten first once ``capacity`` is reached."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def add(self, event_id: str) -> bool:
        """Record ``event_id``; ``False`` if it was already recorded."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True

    def discard(self, event_id: str) -> None:
        self._ids.pop(event_id, None)


async def on_contact_created(event: Event) -> None:
    log.info("new lead %s", event["data"].get("email"))


async def on_deal_stage_changed(event: Event) -> None:
    log.info("deal %s moved %s -> %s", event["data"].get("id"), event["from"], event["to"])


HANDLERS: dict[str, EventHandler] = {
    "contact.created": on_contact_created,
    "deal.stage_changed": on_deal_stage_changed,
}


async def route_event(event: Event) -> None:
    """Send an event to the handler for its type; other types are logged and dropped."""
    handler = HANDLERS.get(event["event"])
    if handler is None:
        log.info("unhandled event %s", event["event"])
        return
    await handler(event)


def create_app(secret: str | None = None, handle_event: EventHandler = route_event) -> FastAPI:
    """Build the listener; ``secret`` defaults to ``$REX_WEBHOOK_SECRET``."""
    webhook_secret = secret if secret is not None else os.environ["REX_WEBHOOK_SECRET"]
    seen = SeenEvents()
    app = FastAPI()

    async def process(event: Event, event_id: str) -> None:
        try:
            await handle_event(event)
        except Exception:
            # Forget the id so that a manual redelivery of this event is processed.
            seen.discard(event_id)
            log.exception("processing %s failed", event_id)

    @app.post("/webhooks/rex")
    async def receive(request: Request, background: BackgroundTasks) -> dict[str, str]:
        # The raw bytes: parsing and re-serializing the JSON would break the signature.
        payload = await request.body()
        signature = request.headers.get("x-rex-signature", "")
        try:
            event = rex.construct_event(payload, signature, webhook_secret)
        except rex.SignatureError as exc:
            log.warning("rejected a webhook (%s): %s", exc.reason, exc)
            raise HTTPException(status_code=401, detail=str(exc)) from exc
        except rex.InvalidPayloadError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc

        # The id inside the signed body, not the unsigned X-Rex-Event-Id header.
        event_id = str(event["id"])
        if not seen.add(event_id):
            return {"status": "duplicate"}  # still 2xx, or Rex would retry it
        background.add_task(process, event, event_id)
        return {"status": "ok"}

    return app
