"""Small helpers shared by the route modules: paging and id checks."""

from __future__ import annotations

from app.errors import ProblemError, not_found
from sidyp_core.ids import is_valid_id


def page_limit(limit: int | None, maximum: int, default: int = 20) -> int:
    if limit is None:
        return min(default, maximum)
    if limit < 1 or limit > maximum:
        raise ProblemError(422, f"limit must be between 1 and {maximum}", slug="invalid-limit")
    return limit


def check_id(value: str, kind: str) -> str:
    """Ids that cannot exist (wrong shape, traversal attempts) answer 404 before touching the store or disk."""
    if not is_valid_id(value, kind):
        raise not_found(kind)
    return value


def check_cursor(value: str | None, kind: str) -> str | None:
    if value is not None and not is_valid_id(value, kind):
        raise ProblemError(422, f"after must be a {kind} id", slug="invalid-cursor")
    return value
