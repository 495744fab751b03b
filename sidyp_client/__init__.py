"""Python client for the sidyp HTTP API.

    from sidyp_client import Client

    with Client("http://127.0.0.1:8000", api_key="sk-...") as client:
        dataset = client.datasets.create("train.csv")
        job = client.jobs.wait(client.jobs.create(dataset.id).id)
        flagged = [row for row in client.jobs.labels(job.id) if row["is_label_issue"]]

It imports nothing of the service (sidyp_engine, sidyp_core, app, worker): httpx and tqdm only, pandas
when a DataFrame is asked for.
"""

from __future__ import annotations

__version__ = "0.1.0"

from sidyp_client.client import Client  # noqa: E402
from sidyp_client.errors import (  # noqa: E402
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GoneError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServiceUnavailableError,
    SidypError,
    ValidationError,
)
from sidyp_client.types import Dataset, Job, JobEvent, Model, Prediction  # noqa: E402

__all__ = [
    "APIConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "Dataset",
    "GoneError",
    "Job",
    "JobEvent",
    "Model",
    "NotFoundError",
    "PayloadTooLargeError",
    "Prediction",
    "RateLimitError",
    "ServiceUnavailableError",
    "SidypError",
    "ValidationError",
    "__version__",
]
