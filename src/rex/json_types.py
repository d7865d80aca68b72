"""JSON at Rex's boundaries, named as such.

What is JSON by nature, whose keys are the user's or the wire's and not Rex's, is a
``JsonObject``: a contact's ``metadata``, an event's ``data`` and envelope (the stored payload,
parsed), an endpoint's ``filter``, a JSON Schema document, a body as received. What Rex builds
and reads itself is a typed record (``rex.outbox.records``, ``rex.contacts.schemas``, ...).
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]
"""A JSON object whose keys Rex does not define (see the module's docstring)."""
