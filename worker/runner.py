"""The one place a job runs, for both modes (Celery task and embedded worker process).

One delivery of a job:
  1. take the job's lock (a re-delivered task never runs beside a live one), skip finished jobs;
  2. count the delivery: past SIDYP_MAX_DELIVERIES the job fails with `worker_lost` instead of looping;
  3. mark it running with a fresh run token; a heartbeat thread renews the lock and `heartbeat_at`;
  4. call `sidyp_engine.pipeline.calibrate` with progress -> job.progress + events, should_stop -> cancel
     flag / time limit / lost ownership, work_dir -> the job's checkpoint folder (reused on re-delivery);
  5. write the model folder and the job's outputs (labels, report, plots, report.html) atomically, then
     the records;
  6. set the final status, with an event, and release the lock.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sidyp_core.artifacts import (
    DATASET_FILE,
    LABELS_FILE,
    artifact_dir,
    job_work_dir,
    read_json,
    write_artifact,
    write_json,
)
from sidyp_core.backbones import resolve_backbone_name
from sidyp_core.config import Settings
from sidyp_core.jobs import JobError, JobLedger, JobProgress, JobRecord
from sidyp_core.store import JobStore, job_lock_name, utc_now_iso
from sidyp_engine.labels import label_table
from sidyp_engine.report import MODEL_KEYS, build_report, write_report_files
from sidyp_engine.types import Progress

log = logging.getLogger("sidyp.worker")


class _LostOwnership(Exception):
    """Another delivery (or the reaper) took the job over: stop without touching its state."""


class JobRunner:
    """`shutdown` (optional): set when the worker is asked to stop; the running job then stops at its next
    batch and goes back to the queue through `requeue` instead of keeping its worker alive."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        worker_id: str,
        shutdown: threading.Event | None = None,
        requeue=None,
    ):
        self.settings = settings
        self.store = store
        self.worker_id = worker_id
        self.shutdown = shutdown
        self.requeue = requeue
        self.jobs = JobLedger(store)

    def work_dir(self, tenant: str, job_id: str) -> Path:
        return job_work_dir(self.settings.data_dir, tenant, job_id)

    # ------------------------------------------------------------------ entry point
    def run(self, job_id: str) -> str:
        """Run one delivery; returns what happened (for logs and tests)."""
        owner = f"{self.worker_id}:{uuid.uuid4().hex[:8]}"
        lock = job_lock_name(job_id)
        ttl = self.settings.stale_after_seconds
        if not self.store.acquire_lock(lock, owner, ttl):
            log.info("job %s is held by another live worker; dropping this delivery", job_id)
            return "locked"
        try:
            return self._run_locked(job_id, owner)
        finally:
            self.store.release_lock(lock, owner)

    def _run_locked(self, job_id: str, owner: str) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            return "missing"
        if job.finished:
            return "already-" + job.status
        if self.store.cancel_requested(job_id):
            self.jobs.finish(job_id, "cancelled", "cancelled before it started")
            return "cancelled"
        deliveries = self.jobs.count_delivery(job_id)
        if deliveries > self.settings.max_deliveries:
            error = JobError(
                code="worker_lost",
                message=f"the job's worker died {deliveries - 1} times; giving up "
                f"(limit SIDYP_MAX_DELIVERIES={self.settings.max_deliveries})",
            )
            self.jobs.finish(job_id, "failed", "worker lost too many times", error=error)
            return "failed"
        started = self.jobs.start(job_id, owner, self.worker_id, deliveries)
        if started is None:
            return "not-runnable"
        return _Delivery(self, started, owner).execute()


class _Delivery:
    """State of one running delivery: progress throttling, heartbeat thread, stop conditions."""

    def __init__(self, runner: JobRunner, job: JobRecord, owner: str):
        self.r = runner
        self.s = runner.settings
        self.store = runner.store
        self.jobs = runner.jobs
        self.job = job
        self.job_id = job.id
        self.tenant = job.tenant
        self.owner = owner
        self.lost = threading.Event()
        self.stop_beating = threading.Event()
        self.started = time.monotonic()
        self.timed_out = False
        self._cancel_checked = 0.0
        self._cancel = False
        self._last_progress_write = 0.0
        self._last_event: tuple[str, float] = ("", -1.0)
        self._last_metrics_event = 0.0
        self._metrics: dict[str, float] = dict(job.metrics)

    # ------------------------------------------------------------------ heartbeat
    def _beat(self) -> None:
        lock = job_lock_name(self.job_id)
        while not self.stop_beating.wait(self.s.heartbeat_interval_seconds):
            try:
                if not self.store.renew_lock(lock, self.owner, self.s.stale_after_seconds):
                    log.warning("job %s: lock lost; stopping this delivery", self.job_id)
                    self.lost.set()
                    return
                if self._write(heartbeat_at=time.time()) is None:
                    self.lost.set()
                    return
            except Exception:  # a store hiccup: try again next beat; staleness is judged by the reaper
                log.exception("job %s: heartbeat failed", self.job_id)

    def _write(self, **changes: Any) -> JobRecord | None:
        return self.jobs.update_running(self.job_id, self.owner, **changes)

    # ------------------------------------------------------------------ engine callbacks
    def should_stop(self) -> bool:
        if self.lost.is_set():
            return True
        if self.r.shutdown is not None and self.r.requeue is not None and self.r.shutdown.is_set():
            return True
        if time.monotonic() - self.started > self.s.max_job_seconds:
            self.timed_out = True
            return True
        now = time.monotonic()
        if now - self._cancel_checked >= self.s.cancel_poll_seconds:
            self._cancel_checked = now
            try:
                self._cancel = self.store.cancel_requested(self.job_id)
            except Exception:
                log.exception("job %s: cancel flag unreadable", self.job_id)
        return self._cancel

    def on_progress(self, p) -> None:
        try:
            self._on_progress(p)
        except Exception:
            # A store blip must not kill hours of training: progress is best-effort, the heartbeat and the
            # final state writes decide ownership and outcome.
            log.warning("job %s: progress update failed", self.job_id, exc_info=True)

    def _on_progress(self, p) -> None:
        stage, fraction = str(p.stage), float(p.fraction)
        for key, value in (p.metrics or {}).items():
            try:
                self._metrics[f"{stage}.{key}"] = float(value)
            except (TypeError, ValueError):
                continue
        now = time.monotonic()
        last_stage, last_fraction = self._last_event
        # Per-batch losses would flood the event log: metric-only updates are kept at most every 2 s.
        metrics_due = bool(p.metrics) and now - self._last_metrics_event >= 2.0
        if stage != last_stage or metrics_due or fraction >= 1.0 or fraction - last_fraction >= 0.1:
            self._last_event = (stage, fraction)
            if p.metrics:
                self._last_metrics_event = now
            self.jobs.event(
                self.job_id,
                "metrics" if p.metrics else "progress",
                stage=stage,
                fraction=round(fraction, 4),
                message=p.message,
                metrics={k: float(v) for k, v in (p.metrics or {}).items() if isinstance(v, int | float)},
            )
        if stage != last_stage or now - self._last_progress_write >= 0.5:
            self._last_progress_write = now
            progress = JobProgress(stage=stage, fraction=fraction, message=p.message)
            if self._write(progress=progress, metrics=dict(self._metrics)) is None:
                self.lost.set()

    # ------------------------------------------------------------------ the run
    def execute(self) -> str:
        beat = threading.Thread(target=self._beat, name=f"heartbeat-{self.job_id}", daemon=True)
        beat.start()
        try:
            return self._execute()
        finally:
            self.stop_beating.set()
            beat.join(timeout=5)

    def _load_dataset(self, dataset_id: str | None) -> dict | None:
        if dataset_id is None:
            return None
        folder = artifact_dir(self.s.data_dir, self.tenant, "datasets", dataset_id)
        try:
            return read_json(folder / DATASET_FILE)
        except FileNotFoundError:
            raise _InputMissing(f"dataset {dataset_id} was deleted before the job ran") from None

    def _execute(self) -> str:
        from sidyp_engine.types import CalibrationStopped, InvalidInputError

        job_id = self.job_id
        work_dir = self.r.work_dir(self.tenant, job_id)
        try:
            outcome = self._calibrate_and_publish(work_dir)
        except _LostOwnership:
            return self._stop_lost()
        except CalibrationStopped:
            if self.lost.is_set():
                return self._stop_lost()
            if self.r.shutdown is not None and self.r.shutdown.is_set() and self.r.requeue is not None:
                return self._requeue_for_shutdown()
            if self.timed_out:
                self._fail(
                    "timeout", f"the job ran longer than SIDYP_MAX_JOB_SECONDS={self.s.max_job_seconds}"
                )
                shutil.rmtree(work_dir, ignore_errors=True)
                return "failed"
            self.jobs.finish(job_id, "cancelled", "cancelled while running", owner=self.owner)
            shutil.rmtree(work_dir, ignore_errors=True)
            return "cancelled"
        except (_InputMissing, InvalidInputError) as exc:
            self._fail("invalid_input", str(exc))
            shutil.rmtree(work_dir, ignore_errors=True)
            return "failed"
        except OSError:
            # Disk full, unwritable data dir: nothing half-written is published (atomic renames).
            self._fail_internal("storage_error", "the job's artifacts could not be written")
            return "failed"
        except Exception:
            self._fail_internal("internal_error", "the job failed on the server")
            return "failed"
        shutil.rmtree(work_dir, ignore_errors=True)
        return outcome

    def _calibration_inputs(self):
        """(train, valid, evaluation, classes, config) of the job; `_InputMissing` where one is gone."""
        from sidyp_engine.types import CalibrationConfig

        train = self._load_dataset(self.job.dataset_id)
        valid = self._load_dataset(self.job.validation_dataset_id)
        evaluation = self._load_dataset(self.job.eval_dataset_id)
        dataset_record = self.store.get("dataset", self.job.dataset_id, None)
        if dataset_record is None:
            raise _InputMissing(f"dataset {self.job.dataset_id} was deleted before the job ran")
        classes = list(dataset_record["labels"])
        params = dict(self.job.params)
        try:
            directory = resolve_backbone_name(params.get("backbone"), self.s)
            params["backbone"] = None if directory is None else str(directory)
        except ValueError as exc:
            raise _InputMissing(str(exc)) from None
        return train, valid, evaluation, classes, CalibrationConfig(**params)

    def _calibrate_and_publish(self, work_dir: Path) -> str:
        if self.s.torch_threads:
            import torch

            torch.set_num_threads(self.s.torch_threads)
        train, valid, evaluation, classes, config = self._calibration_inputs()
        from sidyp_engine.pipeline import calibrate

        work_dir.mkdir(parents=True, exist_ok=True)
        result = calibrate(
            train["text"],
            train["noisy_label"],
            classes,
            valid_texts=valid["text"] if valid else None,
            valid_labels=valid["noisy_label"] if valid else None,
            extra_texts=evaluation["text"] if evaluation else None,
            config=config,
            trusted_labels=train.get("trusted_label"),  # reviewed rows of a "save as dataset"
            progress=self.on_progress,
            should_stop=self.should_stop,
            work_dir=str(work_dir),
        )
        if self.lost.is_set():
            raise _LostOwnership()
        return self._publish(result, train, evaluation)

    def _stop_lost(self) -> str:
        # Logged here whichever check noticed first (the heartbeat or a progress write).
        log.warning("job %s: lock lost; this delivery stops without writing", self.job_id)
        return "lost"

    def _requeue_for_shutdown(self) -> str:
        if not self.jobs.requeue_after_shutdown(self.job_id, self.owner):
            return "lost"
        self.r.requeue(self.job_id)
        return "requeued"

    def _report(self, result, evaluation: dict | None) -> dict:
        """Report v2; the served model is scored on the evaluation texts, so the API reports on the model
        the user queries."""
        gold = evaluation.get("gold_label") if evaluation else None
        served = result.model.predict_proba(evaluation["text"]) if gold else None
        job = self.job
        return build_report(
            result,
            eval_gold=gold,
            eval_given=evaluation["noisy_label"] if gold else None,
            served_eval_probs=served,
            inputs={
                "dataset_id": job.dataset_id,
                "validation_dataset_id": job.validation_dataset_id,
                "eval_dataset_id": job.eval_dataset_id,
            },
            config=job.params,
            job_id=self.job_id,
        )

    def _fail(self, code: str, message: str, error_id: str | None = None) -> None:
        error = JobError(code=code, message=message, error_id=error_id)
        self.jobs.finish(self.job_id, "failed", "failed", error=error, owner=self.owner)

    def _fail_internal(self, code: str, message: str) -> None:
        """A server-side failure: the log gets the exception (paths, hosts, its text); the tenant gets a
        stable code and an id to quote, which finds that log entry."""
        error_id = uuid.uuid4().hex[:16]
        log.exception("job %s failed (%s, error id %s)", self.job_id, code, error_id)
        self._fail(code, f"{message}; quote error id {error_id} to the operator", error_id)

    def _publish(self, result, train: dict, evaluation: dict | None) -> str:
        job_id, tenant = self.job_id, self.tenant
        self.on_progress(Progress("saving", 0.0, "writing model and outputs"))
        model_id = self.job.reserved_model_id
        model_dir = artifact_dir(self.s.data_dir, tenant, "models", model_id)
        write_artifact(model_dir, lambda tmp: result.model.save(tmp), replace=True)
        labels_doc = label_table(result, train["text"])
        report_doc = self._report(result, evaluation)

        def fill(tmp: Path) -> None:
            write_json(tmp / LABELS_FILE, labels_doc)
            write_report_files(tmp, report_doc)  # report.json, plots/, report.html

        write_artifact(artifact_dir(self.s.data_dir, tenant, "jobs", job_id), fill, replace=True)
        if self.lost.is_set():
            raise _LostOwnership()
        if self.store.get("model", model_id, None) is None:
            self.store.put(
                "model",
                {
                    "id": model_id,
                    "object": "model",
                    "tenant": tenant,
                    "job_id": job_id,
                    "dataset_id": self.job.dataset_id,
                    "labels": list(result.classes),
                    "created_at": utc_now_iso(),
                    "params": self.job.params,
                },
            )
        scored = report_doc["eval"] or {}
        summary = {
            "noise_share": report_doc["noise_share"],
            "n_flagged": report_doc["n_flagged"],
            **{
                f"eval.{k}.{m}": scored[k][m]
                for k in MODEL_KEYS
                if scored.get(k)
                for m in ("accuracy", "macro_f1", "ece")
            },
        }
        finished = self.jobs.finish(
            job_id,
            "succeeded",
            "calibrated model ready",
            owner=self.owner,
            model_id=model_id,
            metrics={**self._metrics, **summary},
        )
        return "succeeded" if finished is not None else "lost"


class _InputMissing(Exception):
    pass
