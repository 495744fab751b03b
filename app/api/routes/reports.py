"""A finished job's report: report v2 as JSON, its plots (SVG, PNG) and the self-contained report.html.

All three are files the worker wrote into the job's output folder, read with the same tenant scoping,
404 and 409/410 answers as the job's labels.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import JobDep, SettingsDep
from app.errors import ProblemError
from app.schemas import Report
from app.services.outputs import output_bytes, output_json, require_succeeded
from sidyp_core.artifacts import REPORT_FILE
from sidyp_core.jobs import JobRecord
from sidyp_engine.report import PLOT_NAMES, PLOTS_DIR, REPORT_HTML_FILE, REPORT_VERSION

router = APIRouter(prefix="/v1/jobs", tags=["reports"])

MEDIA_TYPES = {"svg": "image/svg+xml", "png": "image/png"}
# The page and the SVGs are static: no script, nothing from another origin; styles are inline.
STATIC_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STATIC_HEADERS = {
    "Content-Security-Policy": STATIC_CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-cache",
}


def _report_doc(settings, job: JobRecord) -> dict:
    """The job's report.json once the job succeeded (409 before); 410 if it predates report v2."""
    require_succeeded(job)
    doc = output_json(settings, job, REPORT_FILE)
    if doc.get("version") != REPORT_VERSION:
        raise ProblemError(
            410,
            "This job's report was written by an older version of the service; run the job again.",
            slug="report-outdated",
        )
    return doc


@router.get(
    "/{job_id}/report",
    response_model=Report,
    summary="Report v2: noise estimate, flags and class counts, scores of every model, reliability bins",
)
def job_report(job: JobDep, settings: SettingsDep) -> Report:
    return Report(**_report_doc(settings, job))


@router.get(
    "/{job_id}/plots/{name}.{fmt}",
    summary="One plot of the report as SVG or PNG",
    description="name: " + ", ".join(PLOT_NAMES) + "; fmt: svg or png. reliability and confusion exist "
    "only for jobs with an evaluation dataset holding gold labels.",
    response_class=Response,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}},
)
def job_plot(job: JobDep, name: str, fmt: str, settings: SettingsDep) -> Response:
    if name not in PLOT_NAMES or fmt not in MEDIA_TYPES:
        raise ProblemError(
            404,
            f"No such plot; plots are {', '.join(PLOT_NAMES)}, as .svg or .png.",
            slug="plot-not-found",
        )
    _report_doc(settings, job)
    data = output_bytes(settings, job, PLOTS_DIR, f"{name}.{fmt}")
    if data is None:
        raise ProblemError(
            404,
            f"This job has no {name} plot: it needs an evaluation dataset with gold labels.",
            slug="plot-not-available",
        )
    return Response(data, media_type=MEDIA_TYPES[fmt], headers=_STATIC_HEADERS)


@router.get(
    "/{job_id}/report.html",
    summary="The report as one self-contained HTML page (plots inline, no script)",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
def job_report_html(job: JobDep, settings: SettingsDep) -> Response:
    _report_doc(settings, job)
    data = output_bytes(settings, job, REPORT_HTML_FILE)
    if data is None:
        raise ProblemError(410, "The job's outputs are no longer on disk.", slug="outputs-missing")
    return Response(data, media_type="text/html; charset=utf-8", headers=_STATIC_HEADERS)
