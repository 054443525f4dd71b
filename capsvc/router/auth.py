"""Admin tokens: where they come from, and a constant-time check.

Tokens come from `auth.admin_tokens`, the CAPSVC_ADMIN_TOKEN environment variable, and the
token file in the data directory (generated on first start when nothing else is configured).
There is no built-in default token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from capsvc.config import Config
from capsvc.paths import admin_token_file

log = logging.getLogger(__name__)
ENV_TOKEN = "CAPSVC_ADMIN_TOKEN"


def configured_tokens(config: Config) -> list[str]:
    tokens = list(config.auth.admin_tokens)
    env = os.environ.get(ENV_TOKEN, "").strip()
    if env:
        tokens.append(env)
    return tokens


def ensure_admin_token(config: Config) -> Path | None:
    """With no token configured, create one (mode 0600) on first start. Returns the file's
    path when the token lives there."""
    path = admin_token_file(config)
    if configured_tokens(config):
        return None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path


def load_tokens(config: Config) -> list[str]:
    tokens = configured_tokens(config)
    path = admin_token_file(config)
    if path.exists():
        token = path.read_text().strip()
        if token:
            tokens.append(token)
    return tokens


def actor_name(token: str) -> str:
    """How a token appears in the audit log: a short fingerprint, never the token itself."""
    return "admin:" + hashlib.sha256(token.encode()).hexdigest()[:10]


class TokenChecker:
    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    def check(self, authorization: str | None) -> str | None:
        """The actor name for a valid `Bearer` header, else None. Compares against every
        token in constant time, so timing tells nothing about which prefix matched."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        offered = authorization[len("Bearer ") :].strip().encode()
        match = None
        for token in self._tokens:
            if hmac.compare_digest(offered, token):
                match = token
        return actor_name(match.decode()) if match is not None else None
