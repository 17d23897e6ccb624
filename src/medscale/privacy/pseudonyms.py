"""Stable pseudonyms: a keyed hash (HMAC-SHA256) of a source id with a project secret.

The secret never enters the store, the repo, reports or logs. It comes from
``$MEDSCALE_PSEUDONYM_KEY`` (the secret itself), or a key file named by
``$MEDSCALE_PSEUDONYM_KEY_FILE``, else ``~/.config/medscale/pseudonym.key``, which is created
(mode 600) on first use. The same key always maps the same source id to the same pseudonym,
so splits by subject still work; only its *key id* (a hash that reveals nothing of the key)
is recorded, so that two ingests with different keys into one dataset are caught.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from medscale.errors import SpecError

KEY_ENV = "MEDSCALE_PSEUDONYM_KEY"
KEY_FILE_ENV = "MEDSCALE_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path("~/.config/medscale/pseudonym.key")
MIN_KEY_CHARS = 16
_SMALL_NUMBER = re.compile(r"^\d{1,2}$")


@dataclass(frozen=True)
class PseudonymKey:
    """A loaded project secret. ``created`` says a new key file was just written."""

    secret: bytes
    source: str
    created: bool = False

    def __repr__(self) -> str:  # never print the secret
        return f"PseudonymKey(source={self.source!r}, key_id={self.key_id!r})"

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key: equal ids mean the same key."""
        return hashlib.sha256(b"medscale-key-id:" + self.secret).hexdigest()[:12]

    def digest(self, *parts: str) -> str:
        return hmac.new(self.secret, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()

    def subject(self, dataset: str, subject: str) -> str:
        return "sub-" + self.digest(dataset, "subject", subject)[:12]

    def recording(self, dataset: str, recording_id: str) -> str:
        return "rec-" + self.digest(dataset, "recording", recording_id)[:12]

    def session(self, dataset: str, session: str) -> str:
        """Night numbers (1, 2, ...) carry no identity and order matters: they are kept."""
        if not session or _SMALL_NUMBER.match(session):
            return session
        return "ses-" + self.digest(dataset, "session", session)[:8]

    def file(self, dataset: str, relative_path: str) -> str:
        """A file's stand-in in reports: keyed hash of its path, plus its extension."""
        suffix = "".join(Path(relative_path).suffixes[-1:])
        return f"file-{self.digest(dataset, 'file', relative_path)[:12]}{suffix}"


def load_pseudonym_key(*, create: bool = True) -> PseudonymKey:
    """The project secret from the environment or the key file (see module docstring)."""
    value = os.environ.get(KEY_ENV)
    if value is not None:
        if len(value) < MIN_KEY_CHARS:
            raise SpecError(
                f"${KEY_ENV} holds {len(value)} characters; use at least {MIN_KEY_CHARS}"
            )
        return PseudonymKey(value.encode(), f"${KEY_ENV}")
    path = Path(os.environ.get(KEY_FILE_ENV) or DEFAULT_KEY_FILE).expanduser()
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if len(text) < MIN_KEY_CHARS:
            raise SpecError(f"pseudonym key file {path} holds under {MIN_KEY_CHARS} characters")
        return PseudonymKey(text.encode(), str(path))
    if not create:
        raise SpecError(f"no pseudonym key: set ${KEY_ENV} or ${KEY_FILE_ENV}, or create {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32) + "\n")
    return PseudonymKey(path.read_text(encoding="utf-8").strip().encode(), str(path), created=True)


def scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    """``text`` with each source string replaced by its stand-in, longest first (so a full
    path goes before the file name inside it)."""
    for source, stand_in in sorted(replacements, key=lambda r: -len(r[0])):
        if source:
            text = text.replace(source, stand_in)
    return text
