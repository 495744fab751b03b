"""The one settings class of the service. Every value comes from a `SIDYP_`-prefixed environment variable."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Tenant names become folder names under the data dir, so they are restricted like ids.
TENANT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
HASHED_KEY_RE = re.compile(r"sha256:([0-9a-fA-F]{64})")
BACKBONE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# The name `params.backbone` gives the bundled model (the same as leaving it out).
BUNDLED_BACKBONE = "minilm"


def key_digest(key: str) -> str:
    """What the service keeps of an API key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIDYP_", extra="ignore")

    # --- deployment ---
    redis_url: str | None = Field(
        None, description="Redis for job state and the Celery broker; unset = embedded"
    )
    api_keys: SecretStr = Field(
        SecretStr(""), description="'tenant:key' or 'tenant:sha256:<hex>' pairs separated by commas"
    )
    api_keys_file: Path | None = Field(
        None, description="file of 'tenant:key' or 'tenant:sha256:<hex>' lines, added to SIDYP_API_KEYS"
    )
    data_dir: Path = Field(
        Path("data"), description="artifacts: datasets, job outputs, models, the sqlite store"
    )
    backbones: str = Field(
        "", description="'name=directory' pairs separated by commas: the backbones params.backbone may name"
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
    tenant_max_active_jobs: int = Field(
        10, ge=1, description="queued + running jobs one tenant may have; more answer 429"
    )
    tenant_max_bytes: int = Field(
        20 * 2**30,
        ge=1,
        description="bytes of files one tenant may store; uploads and jobs past it answer 429",
    )
    worker_memory_bytes: int | None = Field(
        None,
        ge=1,
        description="memory a worker may use; jobs estimated above it answer 422 (unset: this machine's)",
    )
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
        """Map SHA-256 hex digest of each key -> tenant, from SIDYP_API_KEYS and SIDYP_API_KEYS_FILE.

        Malformed entries, and one key configured for two tenants, are configuration errors (ValueError)."""
        entries = [("SIDYP_API_KEYS", p) for p in self.api_keys.get_secret_value().split(",")]
        if self.api_keys_file is not None:
            try:
                lines = Path(self.api_keys_file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ValueError(f"SIDYP_API_KEYS_FILE cannot be read: {exc.strerror}") from None
            where = "SIDYP_API_KEYS_FILE"
            entries += [(f"{where} line {n}", ln) for n, ln in enumerate(lines, 1) if not ln.startswith("#")]
        out: dict[str, str] = {}
        for where, pair in entries:
            pair = pair.strip()
            if not pair:
                continue
            tenant, digest = _parse_key_entry(pair, where)
            if out.get(digest, tenant) != tenant:
                raise ValueError(
                    f"{where}: one API key is configured for two tenants ({out[digest]}, {tenant})"
                )
            out[digest] = tenant
        return out

    def backbone_dirs(self) -> dict[str, Path]:
        """The operator's backbones: name -> directory (SIDYP_BACKBONES)."""
        out: dict[str, Path] = {}
        for pair in self.backbones.split(","):
            if not pair.strip():
                continue
            name, sep, directory = (x.strip() for x in pair.partition("="))
            if not sep or not BACKBONE_NAME_RE.fullmatch(name) or not directory or name == BUNDLED_BACKBONE:
                raise ValueError(
                    "SIDYP_BACKBONES must be 'name=directory' pairs separated by commas; names use letters, "
                    f"digits, '_', '.' and '-' (1-64) and '{BUNDLED_BACKBONE}' is the bundled model's"
                )
            out[name] = Path(directory).expanduser().resolve()
        return out

    def worker_memory_limit(self) -> int:
        return self.worker_memory_bytes or machine_memory_bytes()


def _parse_key_entry(pair: str, where: str) -> tuple[str, str]:
    tenant, sep, key = (x.strip() for x in pair.partition(":"))
    if not sep or not tenant or not key:
        raise ValueError(f"{where}: entries must be 'tenant:key' or 'tenant:sha256:<64 hex digits>'")
    if not TENANT_RE.fullmatch(tenant):
        raise ValueError(f"{where}: tenant names may use letters, digits, '_' and '-' (1-64)")
    hashed = HASHED_KEY_RE.fullmatch(key)
    if key.startswith("sha256:") and not hashed:
        raise ValueError(f"{where}: a hashed key is 'sha256:' and 64 hex digits")
    return tenant, hashed.group(1).lower() if hashed else key_digest(key)


@functools.lru_cache
def get_settings() -> Settings:
    return Settings()
