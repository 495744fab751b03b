"""`client.models`: list, get, predict, delete."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sidyp_client._http import HTTP
from sidyp_client.types import Model, Prediction

# The server's default SIDYP_MAX_PREDICT_TEXTS; a server configured lower answers 413 (PayloadTooLargeError).
DEFAULT_PREDICT_BATCH = 1000


class Models:
    def __init__(self, http: HTTP):
        self._http = http

    def list(self, *, page_size: int | None = None) -> Iterator[Model]:
        for item in self._http.paginate("/v1/models", {"limit": page_size}, lambda m: m["id"]):
            yield Model.from_api(item)

    def get(self, model_id: str) -> Model:
        return Model.from_api(self._http.get_json(f"/v1/models/{model_id}"))

    def predict(
        self, model_id: str, texts: Sequence[str], *, batch_size: int = DEFAULT_PREDICT_BATCH
    ) -> list[Prediction]:
        """Calibrated P(y | x) for each text, in order; sent `batch_size` texts per request."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string")
        out: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            body = self._http.request("POST", f"/v1/models/{model_id}/predict", json={"texts": batch}).json()
            for text, p in zip(batch, body["predictions"], strict=True):
                out.append(Prediction(text, p["label"], float(p["confidence"]), p["probabilities"]))
        return out

    def delete(self, model_id: str) -> None:
        self._http.request("DELETE", f"/v1/models/{model_id}")
