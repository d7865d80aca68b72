"""Endpoint signing secrets encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``REX_SECRET_KEY`` (one Fernet key, or several comma-separated: the first
encrypts, every one decrypts, which is how the key is rotated), else from a key file:
``REX_SECRET_KEY_FILE``, by default ``<database>.key`` beside a SQLite database or
``~/.config/rex/secret.key`` for PostgreSQL. Rex creates a missing key file (0600, its new
folder 0700) on first use. Every process that reads one database (``rex serve``, each
``rex worker``) needs the same key.

Stored values are ``"fernet:" + token``; a value without that prefix is plain text from
before encryption, still read as it is, and encrypted at start-up by
``encrypt_stored_secrets`` (and by ``rex secrets rotate-key``).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

PREFIX = "fernet:"
_DIALECT_ATTRIBUTE = "rex_secretbox"


class SecretKeyError(RuntimeError):
    """The key is missing, malformed, or does not decrypt what is stored."""


def default_key_file(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database + ".key")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "rex" / "secret.key"


def _read_or_create(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(key + "\n")
    return key


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys if k.strip()])
        except (ValueError, TypeError) as exc:
            raise SecretKeyError(
                "REX_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes; make "
                "one with `rex secrets generate-key`)"
            ) from exc
        self._decrypted: dict[str, str] = {}

    def encrypt(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # plain text from before 0006; encrypted at the next start-up
        cached = self._decrypted.get(stored)
        if cached is None:
            try:
                cached = self._fernet.decrypt(stored[len(PREFIX) :].encode()).decode()
            except InvalidToken:
                raise SecretKeyError(
                    "an endpoint secret does not decrypt with this key: every server and "
                    "worker needs the same REX_SECRET_KEY (or key file)"
                ) from None
            if len(self._decrypted) > 10_000:
                self._decrypted.clear()
            self._decrypted[stored] = cached
        return cached

    def rotate(self, stored: str) -> str:
        """Re-encrypt under the first key (plain text is encrypted)."""
        if not stored.startswith(PREFIX):
            return self.encrypt(stored)
        return PREFIX + self._fernet.rotate(stored[len(PREFIX) :].encode()).decode()


@lru_cache(maxsize=64)
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(list(keys))


class _KeySettings(BaseSettings):
    """Read like every setting (environment or ``.env``), at each engine's creation: the
    engine has only its URL, not the app's ``Settings``."""

    model_config = SettingsConfigDict(env_prefix="REX_", env_file=".env", extra="ignore")

    secret_key: str = ""
    secret_key_file: str = ""


def key_file_in_use(database_url: str) -> Path | None:
    """The key file whose key encrypts ``database_url``'s secrets (None when the key comes
    from ``REX_SECRET_KEY``): a backup of the database needs it too."""
    settings = _KeySettings()
    if settings.secret_key.strip():
        return None
    file = settings.secret_key_file.strip()
    return Path(file) if file else default_key_file(database_url)


def for_database(database_url: str) -> SecretBox:
    """The box for ``database_url``: ``REX_SECRET_KEY``, else the key file (created once)."""
    settings = _KeySettings()
    configured = settings.secret_key.strip()
    if configured:
        return _box(tuple(configured.split(",")))
    file = settings.secret_key_file.strip()
    path = Path(file) if file else default_key_file(database_url)
    return _box(tuple(_read_or_create(path).split(",")))


def attach(dialect: Dialect, box: SecretBox) -> None:
    """Make ``EncryptedSecret`` columns of this engine use ``box``."""
    setattr(dialect, _DIALECT_ATTRIBUTE, box)


def _box_of(dialect: Dialect) -> SecretBox:
    box = getattr(dialect, _DIALECT_ATTRIBUTE, None)
    if box is None:
        raise SecretKeyError("no secret key attached to this engine (use rex.db.engine.Database)")
    return box  # type: ignore[no-any-return]


class EncryptedSecret(sa.types.TypeDecorator[str]):
    """A secret column: encrypted on the way in, decrypted on the way out."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or (isinstance(value, str) and value.startswith(PREFIX)):
            return value
        return _box_of(dialect).encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return _box_of(dialect).decrypt(str(value))


async def encrypt_stored_secrets(conn: AsyncConnection, *, rotate: bool = False) -> int:
    """Encrypt plain-text secrets (and with ``rotate``, re-encrypt every one under the first
    key); returns how many values were rewritten. Raises ``SecretKeyError`` when a stored
    secret does not decrypt with the key."""
    box = _box_of(conn.dialect)
    columns = ("secret", "previous_secret", "headers")
    raw = sa.table("endpoints", sa.column("id"), *(sa.column(c) for c in columns))
    rows = (await conn.execute(sa.select(raw.c.id, *(raw.c[c] for c in columns)))).all()
    changed = 0
    for row in rows:
        values: dict[str, str] = {}
        for column in columns:
            stored = getattr(row, column)
            if stored is None:
                continue
            box.decrypt(stored)  # fails loudly with the wrong key
            if rotate or not stored.startswith(PREFIX):
                values[column] = box.rotate(stored)
        if values:
            await conn.execute(sa.update(raw).where(raw.c.id == row.id).values(**values))
            changed += len(values)
    return changed
