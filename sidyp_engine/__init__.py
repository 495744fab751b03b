"""SiDyP as a library: calibrate classifiers trained on LLM-generated noisy labels."""

from typing import TYPE_CHECKING, Any

from sidyp_engine.types import (
    CalibrationConfig,
    CalibrationResult,
    CalibrationStopped,
    InvalidInputError,
    Progress,
)

if TYPE_CHECKING:
    from sidyp_engine.pipeline import calibrate
    from sidyp_engine.served import ServedClassifier

__all__ = [
    "CalibrationConfig",
    "CalibrationResult",
    "CalibrationStopped",
    "InvalidInputError",
    "Progress",
    "ServedClassifier",
    "calibrate",
]

# torch and transformers are imported lazily: `import sidyp_engine` (e.g. for the types, in the web
# process) must stay cheap; the heavy modules load on first use of `calibrate` / `ServedClassifier`.
_LAZY = {"calibrate": "sidyp_engine.pipeline", "ServedClassifier": "sidyp_engine.served"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sidyp_engine' has no attribute {name!r}")
