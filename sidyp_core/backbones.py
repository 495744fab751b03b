"""Which model directories a job may name as its backbone: the bundled one, or one the operator allowed.

Clients never get to point the worker at an arbitrary path: `params.backbone` must resolve (symlinks and
`..` included) to one of SIDYP_ALLOWED_BACKBONE_DIRS or a folder inside one.
"""

from __future__ import annotations

from pathlib import Path

from sidyp_core.config import Settings


def resolve_allowed_backbone(value: str | None, settings: Settings) -> str | None:
    """The resolved directory, None for the bundled model; ValueError when not allowed."""
    if value is None:
        return None
    if "\x00" in value or not value.strip():
        raise ValueError("backbone must be a directory the server allows")
    try:
        path = Path(value).expanduser().resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ValueError("backbone is not an allowed model directory on this server") from exc
    for root in settings.allowed_backbones():
        if path == root or root in path.parents:
            if not path.is_dir():
                break
            return str(path)
    raise ValueError(
        "backbone is not an allowed model directory on this server (set SIDYP_ALLOWED_BACKBONE_DIRS)"
    )
