"""Random, unguessable resource ids, and the one check every id passes before it is used in a path."""

from __future__ import annotations

import re
import secrets

PREFIXES = {"dataset": "ds", "job": "job", "model": "mdl"}
# 16 random bytes -> 22 url-safe characters; the prefix says what the id names.
ID_RE = re.compile(r"(ds|job|mdl)_[A-Za-z0-9_-]{22}")


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{secrets.token_urlsafe(16)}"


def is_valid_id(value: str, kind: str) -> bool:
    return bool(ID_RE.fullmatch(value)) and value.startswith(PREFIXES[kind] + "_")
