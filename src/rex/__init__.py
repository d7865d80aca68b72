"""Rex: a self-hostable go-to-market backend.

What applications import from ``rex`` is the webhook receiver helper::

    import rex

    event = rex.construct_event(payload, request.headers["X-Rex-Signature"], secret)
"""

from rex._signing import (
    DEFAULT_TOLERANCE,
    InvalidPayloadError,
    SignatureError,
    construct_event,
    verify_signature,
)
from rex._version import __version__
from rex.receiver import construct_event_from_request

__all__ = [
    "DEFAULT_TOLERANCE",
    "InvalidPayloadError",
    "SignatureError",
    "__version__",
    "construct_event",
    "construct_event_from_request",
    "verify_signature",
]
