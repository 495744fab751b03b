"""Serving calibrated models: the loaded-model cache, the inference pool, predict and delete."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.errors import ProblemError
from app.schemas import Model, Prediction, PredictResponse
from sidyp_core.artifacts import artifact_dir, remove_artifact
from sidyp_core.config import Settings
from sidyp_core.store import JobStore

PUBLIC_FIELDS = set(Model.model_fields)


def to_public(record: dict) -> Model:
    return Model(**{k: v for k, v in record.items() if k in PUBLIC_FIELDS})


class ModelCache:
    """Loaded classifiers, least recently used dropped first. Models load only from the service's own
    data dir (the path is built from the validated tenant and id) and only from safetensors."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, settings: Settings, tenant: str, model_id: str):
        key = (tenant, model_id)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        from sidyp_engine.served import ServedClassifier

        model = ServedClassifier.load(
            artifact_dir(settings.data_dir, tenant, "models", model_id), device="cpu"
        )
        with self._lock:
            self._items[key] = model
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return model

    def evict(self, tenant: str, model_id: str) -> None:
        with self._lock:
            self._items.pop((tenant, model_id), None)


model_cache = ModelCache()


class InferencePool:
    """Where predict's forward passes run: a few threads with one torch thread each, fed in arrival order.

    Without it every request thread of the API runs torch with its own team of intra-op threads: 32 concurrent
    requests on 2 cores meant 64 busy-waiting threads, and each batch took several times longer. Bounding the
    passes to one per core keeps the cores busy without oversubscribing them, and the queue is FIFO, so the
    tail latency stays close to the median.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _one_torch_thread() -> None:
        import torch

        torch.set_num_threads(1)

    def run(self, settings: Settings, fn, *args):
        with self._lock:
            if self._pool is None:
                cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
                self._pool = ThreadPoolExecutor(
                    max_workers=settings.predict_concurrency or cores or 1,
                    thread_name_prefix="sidyp-predict",
                    initializer=self._one_torch_thread,
                )
        return self._pool.submit(fn, *args).result()


inference_pool = InferencePool()


def delete_model(settings: Settings, store: JobStore, tenant: str, model_id: str) -> bool:
    if not store.delete("model", model_id, tenant):
        return False
    model_cache.evict(tenant, model_id)
    remove_artifact(artifact_dir(settings.data_dir, tenant, "models", model_id))
    return True


def _check_texts(texts: list[str], settings: Settings) -> None:
    if len(texts) > settings.max_predict_texts:
        raise ProblemError(
            413,
            f"{len(texts)} texts; at most {settings.max_predict_texts} per call",
            slug="too-many-texts",
            errors=[{"field": "body.texts", "message": f"at most {settings.max_predict_texts} texts"}],
        )
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise ProblemError(
            422,
            f"{len(blank)} empty texts",
            slug="empty-text",
            errors=[{"field": f"body.texts.{i}", "message": "empty text"} for i in blank[:50]],
        )
    too_long = [i for i, t in enumerate(texts) if len(t) > settings.max_text_chars]
    if too_long:
        raise ProblemError(
            422,
            f"{len(too_long)} texts longer than {settings.max_text_chars} characters",
            slug="text-too-long",
            errors=[{"field": f"body.texts.{i}", "message": "text too long"} for i in too_long[:50]],
        )


def predict(settings: Settings, tenant: str, model_id: str, texts: list[str]) -> PredictResponse:
    _check_texts(texts, settings)
    from sidyp_engine.types import InvalidInputError

    try:
        model = model_cache.get(settings, tenant, model_id)
    except (FileNotFoundError, InvalidInputError):
        # The loader refuses a folder without its safetensors weights and metadata (it never falls back to
        # pickle): the record exists but its files are gone or not ours. The path stays out of the answer.
        raise ProblemError(
            410, "The model's files are missing or unreadable on the server.", slug="model-files-missing"
        ) from None
    probs = inference_pool.run(settings, model.predict_proba, texts)
    classes = list(model.classes)
    predictions = []
    for row in probs:
        best = int(row.argmax())
        predictions.append(
            Prediction(
                label=classes[best],
                confidence=float(row[best]),
                probabilities={c: float(p) for c, p in zip(classes, row, strict=True)},
            )
        )
    return PredictResponse(model_id=model_id, predictions=predictions)
