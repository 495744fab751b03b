"""SiDyP as a library: calibrate classifiers trained on LLM-generated noisy labels."""

from sidyp_engine.types import (
    CalibrationConfig,
    CalibrationResult,
    CalibrationStopped,
    InvalidInputError,
    Progress,
)

__all__ = [
    "CalibrationConfig",
    "CalibrationResult",
    "CalibrationStopped",
    "InvalidInputError",
    "Progress",
]
