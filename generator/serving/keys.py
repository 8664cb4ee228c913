"""API keys: who an HTTP API request is.

A server reachable beyond this computer answers API requests only with a key, sent as
``Authorization: Bearer KEY`` (or ``X-API-Key: KEY``). Keys come from a file
(``app.py --api-keys FILE``: one key per line, ``NAME KEY`` or just ``KEY``, ``#`` comments) or
from ``$GENERATOR_API_KEYS`` (keys separated by commas, each ``NAME:KEY`` or ``KEY``). Each key is
one identity: its jobs and files are seen by that key only. Keys are kept as digests and
compared in constant time; a key is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from generator.errors import ConfigError

API_KEYS_ENV = "GENERATOR_API_KEYS"
MIN_KEY_LENGTH = 16
LOCAL_IDENTITY = "local"
"""The identity of keyless API requests to a server only this computer can reach."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The keys a server accepts, as digests, each with the identity it stands for."""

    identities: Mapping[bytes, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> ApiKeys:
        """The keys of ``path`` and ``$GENERATOR_API_KEYS`` (either may be absent).

        Raises:
            ConfigError: the file cannot be read, a key is shorter than 16 characters, or two
                identities share a name.
        """
        environ = os.environ if environ is None else environ
        entries: list[tuple[str, str]] = []
        if path:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise ConfigError(f"the API keys file {path} cannot be read ({error}); give a text file with one "
                                  "key per line (NAME KEY, or KEY).") from None
            for number, line in enumerate(text.splitlines(), start=1):
                words = line.split("#", 1)[0].split()
                if not words:
                    continue
                if len(words) > 2:
                    raise ConfigError(f"{Path(path).name} line {number}: write one key per line, as NAME KEY or "
                                      "KEY.")
                entries.append((words[0], words[1]) if len(words) == 2 else ("", words[0]))
        for item in filter(None, (part.strip() for part in environ.get(API_KEYS_ENV, "").split(","))):
            name, colon, key = item.partition(":")
            entries.append((name, key) if colon else ("", item))
        identities: dict[bytes, str] = {}
        for name, key in entries:
            if len(key) < MIN_KEY_LENGTH:
                raise ConfigError(f"an API key must be at least {MIN_KEY_LENGTH} characters long; make one with "
                                  "python -c 'import secrets; print(secrets.token_urlsafe(32))'.")
            digest = _digest(key)
            identity = name or f"key-{digest.hex()[:8]}"
            if identity in identities.values() or identity == LOCAL_IDENTITY:
                raise ConfigError(f"the API key name {identity!r} is given twice (or is reserved); give each key "
                                  "its own name.")
            identities[digest] = identity
        return cls(identities)

    def __bool__(self) -> bool:
        return bool(self.identities)

    def identity(self, key: str | None) -> str | None:
        """The identity of ``key``, or None for a key this server does not know (or none)."""
        if not key:
            return None
        digest = _digest(key)
        found = None
        for known, identity in self.identities.items():  # every key compared, in constant time
            if hmac.compare_digest(known, digest):
                found = identity
        return found
