"""Which backbone a job may use: the bundled one, or one the operator registered by name.

`params.backbone` is a NAME, never a path: SIDYP_BACKBONES maps names to local model directories, and
'minilm' (or no value) is the bundled model. Anything else gets the same answer whether or not some path
of that spelling exists on the server, so the API reveals nothing about the server's file system.
"""

from __future__ import annotations

from pathlib import Path

from sidyp_core.config import BUNDLED_BACKBONE, Settings

NOT_REGISTERED = "backbone is not a backbone name registered on this server"


def backbone_names(settings: Settings) -> list[str]:
    return [BUNDLED_BACKBONE, *sorted(settings.backbone_dirs())]


def resolve_backbone_name(name: str | None, settings: Settings) -> Path | None:
    """The registered directory for `name`, None for the bundled model; ValueError for anything else."""
    if name is None or name == BUNDLED_BACKBONE:
        return None
    directory = settings.backbone_dirs().get(name)
    if directory is None:
        raise ValueError(NOT_REGISTERED)
    return directory
