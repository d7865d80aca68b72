"""Web origins (``https://www.acme.com``): the one normal form workspaces store and compare.

A workspace's ``allowed_origins`` decide which sites may read ``/capture`` answers (CORS) and
where a form post may be sent back to (``_next``, ``redirect_url``). Browsers send ``Origin``
with an ASCII (punycode) host, lower-case, without a default port; ``normalize_origin`` puts
configured values in that same form so a plain string comparison is enough.
"""

from __future__ import annotations

from urllib.parse import SplitResult, quote, urljoin, urlsplit

import idna

ANY_ORIGIN = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters kept as they are when a redirect target is re-serialised; everything else
# (spaces, non-ASCII, quotes) is percent-encoded so the Location header means one thing.
_URL_SAFE = "!$&'()*+,;=:@/?%-._~"


class InvalidOrigin(ValueError):
    pass


def _ascii_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if not host:
        raise InvalidOrigin("the host is missing")
    if ":" in host:  # an IPv6 literal (urlsplit has removed the brackets)
        return f"[{host}]"
    if host.isascii():
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidOrigin(f"the host {host!r} is not a valid domain name ({exc})") from None


def _origin_of(parts: SplitResult) -> str:
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidOrigin("only http:// and https:// origins are allowed")
    if "@" in parts.netloc:
        raise InvalidOrigin("an origin has no user name or password")
    try:
        port = parts.port
    except ValueError:
        raise InvalidOrigin("the port is not a number from 1 to 65535") from None
    host = _ascii_host(parts.hostname or "")
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def normalize_origin(value: str) -> str:
    """``"HTTPS://WWW.Acme.com:443/"`` -> ``"https://www.acme.com"``; ``"*"`` stays ``"*"``.

    Raises ``InvalidOrigin`` with a message a person can act on.
    """
    text = value.strip()
    if text == ANY_ORIGIN:
        return ANY_ORIGIN
    if text.lower() == "null":
        raise InvalidOrigin("'null' (sandboxed pages, file://) cannot be allowed")
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        raise InvalidOrigin(f"{text!r} is not an origin like https://www.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOrigin(
            f"{text!r} has a path; an origin is only scheme://host[:port], "
            "e.g. https://www.example.com"
        )
    return _origin_of(parts)


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """Whether a request's ``Origin`` header is one of ``allowed`` (``"*"`` allows any)."""
    if not origin:
        return False
    if ANY_ORIGIN in allowed:
        return True
    try:
        return normalize_origin(origin) in allowed
    except InvalidOrigin:
        return False


def safe_redirect(target: str, allowed: list[str], *, base: str | None = None) -> str | None:
    """The URL to redirect a form post to, or ``None`` when ``target`` must not be followed.

    Only absolute http(s) URLs whose origin is listed *explicitly* in ``allowed`` pass: ``"*"``
    opens CORS, never redirects, so Rex cannot be used as an open redirect. A relative
    ``target`` is resolved against ``base`` (the page that posted the form) first. The result
    is re-serialised from its parsed parts so browsers and Rex read the same URL.
    """
    target = target.strip()
    # Browsers treat "\" as "/" and skip control characters inside URLs; Python does not.
    # Refusing them outright closes the gap between the two parsers.
    if not target or "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return None
    if base and not urlsplit(target).scheme:
        target = urljoin(base, target)
    parts = urlsplit(target)
    try:
        origin = _origin_of(parts)
    except InvalidOrigin:
        return None
    if origin not in allowed:
        return None
    url = origin + (quote(parts.path, safe=_URL_SAFE) or "/")
    if parts.query:
        url += "?" + quote(parts.query, safe=_URL_SAFE)
    if parts.fragment:
        url += "#" + quote(parts.fragment, safe=_URL_SAFE)
    return url
