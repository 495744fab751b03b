"""The one settings class of the service. Every value comes from a `SIDYP_`-prefixed environment variable."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Tenant names become folder names under the data dir, so they are restricted like ids.
TENANT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIDYP_", extra="ignore")

    # --- deployment ---
    redis_url: str | None = Field(
        None, description="Redis for job state and the Celery broker; unset = embedded"
    )
    api_keys: str = Field("", description="'tenant:key' pairs separated by commas", repr=False)
    data_dir: Path = Field(
        Path("data"), description="artifacts: datasets, job outputs, models, the sqlite store"
    )
    allowed_backbone_dirs: str = Field(
        "", description="comma-separated local model dirs a job's params.backbone may name (None = bundled)"
    )
    debug: bool = Field(False, description="debug error pages; never on in production")

    # --- limits ---
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1)
    max_json_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_rows: int = Field(200_000, ge=2)
    max_text_chars: int = Field(10_000, ge=1)
    max_classes: int = Field(100, ge=2)
    max_predict_texts: int = Field(1000, ge=1)
    max_queued_jobs: int = Field(100, ge=1, description="queued jobs over all tenants; more answer 429")
    max_page_size: int = Field(1000, ge=1)

    # --- jobs and workers ---
    max_job_seconds: int = Field(
        6 * 3600, ge=10, description="a running job is stopped and failed after this"
    )
    visibility_timeout_seconds: int = Field(
        7 * 3600, ge=20, description="Redis broker visibility timeout; must exceed max_job_seconds"
    )
    heartbeat_interval_seconds: float = Field(2.0, gt=0)
    stale_after_seconds: float = Field(30.0, gt=0, description="a running job silent this long is reaped")
    reaper_interval_seconds: float = Field(5.0, gt=0)
    max_deliveries: int = Field(3, ge=1, description="deliveries after which a job whose worker died fails")
    worker_alive_seconds: float = Field(15.0, gt=0, description="a worker is live if it beat this recently")
    cancel_poll_seconds: float = Field(0.5, gt=0)
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads in workers; 0 = torch default")
    worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="workers lower their CPU priority by this much, so an API on the same host stays responsive",
    )
    predict_concurrency: int = Field(
        0, ge=0, description="API: predict forward passes run at once, one torch thread each; 0 = one per CPU"
    )

    @model_validator(mode="after")
    def _check_timeouts(self) -> Settings:
        if self.visibility_timeout_seconds <= self.max_job_seconds:
            raise ValueError(
                "SIDYP_VISIBILITY_TIMEOUT_SECONDS must exceed SIDYP_MAX_JOB_SECONDS, otherwise Redis re-delivers "
                "a task that is still running"
            )
        if self.stale_after_seconds <= 2 * self.heartbeat_interval_seconds:
            raise ValueError(
                "SIDYP_STALE_AFTER_SECONDS must be more than twice SIDYP_HEARTBEAT_INTERVAL_SECONDS"
            )
        self.data_dir = self.data_dir.expanduser().resolve()
        return self

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    def tenant_keys(self) -> dict[str, str]:
        """Map key -> tenant. Malformed pairs are a configuration error, not silently dropped."""
        out: dict[str, str] = {}
        for pair in self.api_keys.split(","):
            pair = pair.strip()
            if not pair:
                continue
            tenant, sep, key = pair.partition(":")
            if not sep or not tenant.strip() or not key.strip():
                raise ValueError("SIDYP_API_KEYS must be 'tenant:key' pairs separated by commas")
            if not TENANT_RE.fullmatch(tenant.strip()):
                raise ValueError("tenant names in SIDYP_API_KEYS may use letters, digits, '_' and '-' (1-64)")
            out[key.strip()] = tenant.strip()
        return out

    def allowed_backbones(self) -> list[Path]:
        return [
            Path(p.strip()).expanduser().resolve() for p in self.allowed_backbone_dirs.split(",") if p.strip()
        ]


@functools.lru_cache
def get_settings() -> Settings:
    return Settings()
