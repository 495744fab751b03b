"""`client.jobs`: create, get, list, cancel, delete, events, wait; outputs: labels, report, plots, reviews."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from sidyp_client._http import HTTP, drop_none
from sidyp_client._progress import StageBars
from sidyp_client.types import Job, JobEvent

PlotFormat = Literal["svg", "png"]
ReviewAction = Literal["accept", "keep", "set"]


class Jobs:
    def __init__(self, http: HTTP):
        self._http = http

    # ------------------------------------------------------------------------------------------ lifecycle
    def create(
        self,
        dataset_id: str,
        params: Mapping[str, Any] | None = None,
        *,
        validation_dataset_id: str | None = None,
        eval_dataset_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue a calibration job. `params`: epochs, branches, diffusion_epochs, k, noise_fraction, seed,
        max_length, backbone, batch_size (the server's defaults for any left out)."""
        body: dict[str, Any] = {"dataset_id": dataset_id}
        if validation_dataset_id is not None:
            body["validation_dataset_id"] = validation_dataset_id
        if eval_dataset_id is not None:
            body["eval_dataset_id"] = eval_dataset_id
        if params:
            body["params"] = dict(params)
        response = self._http.request("POST", "/v1/jobs", json=body, idempotency_key=idempotency_key or True)
        return Job.from_api(response.json())

    def get(self, job_id: str) -> Job:
        return Job.from_api(self._http.get_json(f"/v1/jobs/{job_id}"))

    def list(
        self, *, status: str | None = None, dataset_id: str | None = None, page_size: int | None = None
    ) -> Iterator[Job]:
        """This tenant's jobs, newest first, optionally only those with `status` / of `dataset_id`."""
        params = {"status": status, "dataset_id": dataset_id, "limit": page_size}
        for item in self._http.paginate("/v1/jobs", params, lambda j: j["id"]):
            yield Job.from_api(item)

    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one stops at its next batch (`cancel_requested`)."""
        return Job.from_api(self._http.request("POST", f"/v1/jobs/{job_id}/cancel").json())

    def delete(self, job_id: str) -> None:
        """Remove the job and its outputs; refused (ConflictError) while it runs."""
        self._http.request("DELETE", f"/v1/jobs/{job_id}")

    def events(self, job_id: str, *, after: int = -1, page_size: int | None = None) -> Iterator[JobEvent]:
        """The job's events so far with `seq` > `after`, in order (does not wait for new ones)."""
        params = {"after": after, "limit": page_size}
        for item in self._http.paginate(f"/v1/jobs/{job_id}/events", params, lambda e: e["seq"]):
            yield JobEvent.from_api(item)

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        progress: bool = True,
    ) -> Job:
        """Poll until the job ends and return it (check `.status`: succeeded, failed or cancelled). With
        `progress`, a bar per stage is drawn on stderr. Raises TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bars = StageBars(enabled=progress)
        job = None
        try:
            while True:
                job = self.get(job_id)
                bars.update(job)
                if job.done:
                    return job
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
                time.sleep(poll_interval)
        finally:
            bars.close(job)

    # -------------------------------------------------------------------------------------------- outputs
    def labels(
        self,
        job_id: str,
        *,
        is_label_issue: bool | None = None,
        given_label: str | None = None,
        suggested_label: str | None = None,
        q: str | None = None,
        reviewed: bool | None = None,
        order: Literal["index", "label_quality", "random"] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One dict per row of a succeeded job (index, text, given/suggested label, label_quality,
        is_label_issue, probabilities, ...), filtered on the server; pages are fetched as you iterate.
        `order="label_quality"` lists the most doubtful rows first, `order="random"` a fixed shuffle (a
        random sample to hand-check as trusted rows); `q` searches the text."""
        params = {
            "is_label_issue": is_label_issue,
            "given_label": given_label,
            "suggested_label": suggested_label,
            "q": q,
            "reviewed": reviewed,
            "order": order,
            "limit": page_size,
        }
        yield from self._http.paginate(f"/v1/jobs/{job_id}/labels", params, lambda row: row["index"])

    def labels_dataframe(self, job_id: str, **filters: Any):
        """The rows of `labels()` as a pandas DataFrame indexed by row index (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("labels_dataframe needs pandas: pip install pandas") from exc
        rows = list(self.labels(job_id, **filters))
        frame = pd.DataFrame(rows)
        return frame.set_index("index") if "index" in frame.columns else frame

    def labels_csv(
        self,
        job_id: str,
        *,
        corrected: bool = False,
        path: str | Path | None = None,
        is_label_issue: bool | None = None,
    ) -> bytes:
        """The server's CSV export (formula-safe cells); `corrected=True` applies saved reviews,
        `is_label_issue=True` keeps the flagged rows. Written to `path` too when given."""
        params = {"format": "csv", "corrected": corrected or None, "is_label_issue": is_label_issue}
        content = self._http.request("GET", f"/v1/jobs/{job_id}/labels", params=drop_none(params)).content
        if path is not None:
            Path(path).write_bytes(content)
        return content

    def report(self, job_id: str) -> dict[str, Any]:
        """The job's report: noise estimate and matrix, flags per class, timings, eval scores."""
        return self._http.get_json(f"/v1/jobs/{job_id}/report")

    def plot(self, job_id: str, name: str, fmt: PlotFormat = "svg") -> bytes:
        """One report plot (reliability, noise_matrix, class_distribution, confusion, label_quality)."""
        if fmt not in ("svg", "png"):
            raise ValueError("fmt must be 'svg' or 'png'")
        return self._http.request("GET", f"/v1/jobs/{job_id}/plots/{name}.{fmt}").content

    def report_html(self, job_id: str) -> str:
        """The self-contained report page (plots inline)."""
        return self._http.request("GET", f"/v1/jobs/{job_id}/report.html").text

    def review(
        self, job_id: str, reviews: Iterable[Mapping[str, Any] | tuple[int, ReviewAction, str | None]]
    ) -> dict[str, Any]:
        """Save decisions on rows: each `{"index": i, "action": "accept"|"keep"|"set", "label": ...}` or a
        tuple (index, action, label); `label` only with "set". Returns the server's answer."""
        items = []
        for r in reviews:
            index, action, label = (r["index"], r["action"], r.get("label")) if isinstance(r, Mapping) else r
            items.append({"index": int(index), "action": action, "label": label})
        return self._http.request("POST", f"/v1/jobs/{job_id}/reviews", json={"reviews": items}).json()
