"""How the client commands reach Rex: ``REX_URL`` and ``REX_API_KEY``, over HTTP (httpx).

Every failure becomes a ``CliError`` whose message is one line a person can act on: a
wrong key, a server that does not answer, an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from rex._version import __version__
from rex.cli._errors import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, CliError
from rex.json_types import JsonObject

USER_AGENT = f"rex-cli/{__version__}"
DEFAULT_URL = "http://127.0.0.1:8080"


class ClientConfig(BaseSettings):
    """``REX_URL`` and ``REX_API_KEY``, from the environment or a ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="REX_", env_file=".env", extra="ignore")

    url: str = DEFAULT_URL
    api_key: str = Field("", repr=False)
    client_timeout: float = Field(30.0, gt=0)

    @classmethod
    def load(cls) -> ClientConfig:
        try:
            config = cls()
        except ValidationError as exc:
            raise CliError(f"bad client settings: {exc}".replace("\n", " ")) from None
        if not config.api_key.strip():
            raise CliError(
                "REX_API_KEY is not set: export REX_API_KEY=<key> or pass --api-key "
                "(`rex keys create` makes one)",
                EXIT_USAGE,
            )
        if not config.url.startswith(("http://", "https://")):
            raise CliError(
                f"REX_URL must start with http:// or https://, got {config.url!r}", EXIT_USAGE
            )
        return config

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key.strip(), "User-Agent": USER_AGENT}


def describe_transport_error(exc: httpx.TransportError, url: str) -> str:
    """One line for a request that got no answer."""
    if isinstance(exc, httpx.ConnectError):
        reason = str(exc) or "connection failed"
        if "refused" in reason.lower() or "errno 111" in reason.lower():
            reason = "connection refused"
        return f"cannot reach Rex at {url} ({reason}); is `rex serve` running? check REX_URL"
    if isinstance(exc, httpx.TimeoutException):
        return f"Rex at {url} did not answer in time ({type(exc).__name__})"
    return f"lost the connection to Rex at {url} ({type(exc).__name__}: {exc})"


def error_message(response: httpx.Response) -> str:
    """One line for a non-2xx answer, from the error envelope when there is one."""
    try:
        error = response.json()["error"]
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        message = text or response.reason_phrase
    if response.status_code == 401:
        return f"authentication failed: {message} (check REX_API_KEY)"
    if response.status_code == 404:
        return f"not found: {message}"
    return f"{response.status_code} {response.reason_phrase}: {message}"


class ApiError(CliError):
    """Rex answered with an error status."""

    def __init__(self, response: httpx.Response) -> None:
        code = {401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND}.get(response.status_code, 1)
        super().__init__(error_message(response), code)
        self.status_code = response.status_code


class RexApi:
    """A small synchronous client of Rex's HTTP API for the operator commands."""

    def __init__(self, config: ClientConfig, *, transport: httpx.BaseTransport | None = None):
        self.config = config
        self._client = httpx.Client(
            base_url=config.base_url,
            headers=config.headers,
            timeout=config.client_timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request; return the decoded JSON body of a 2xx, raise ``CliError``."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._client.request(method, path, params=query, json=json)
        except httpx.TransportError as exc:
            raise CliError(
                describe_transport_error(exc, self.config.base_url), EXIT_UNREACHABLE
            ) from None
        if response.is_error:
            raise ApiError(response)
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{method} {path}: Rex answered {response.status_code} without JSON; "
                "is REX_URL pointing at Rex?"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        return self.request("POST", path, json=json)

    def patch(self, path: str, json: Any) -> Any:
        return self.request("PATCH", path, json=json)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def pages(self, path: str, *, limit: int, **params: Any) -> Iterator[JsonObject]:
        """Every item of a list, following ``next_cursor``, ``limit`` at most."""
        cursor = None
        remaining = limit
        while remaining > 0:
            body = self.get(path, limit=min(remaining, 100), cursor=cursor, **params)
            yield from body["data"][:remaining]
            remaining -= len(body["data"])
            cursor = body.get("next_cursor")
            if not cursor or not body["data"]:
                return


@contextmanager
def connect() -> Iterator[RexApi]:
    """A client configured from ``REX_URL`` and ``REX_API_KEY``."""
    api = RexApi(ClientConfig.load())
    try:
        yield api
    finally:
        api.close()
