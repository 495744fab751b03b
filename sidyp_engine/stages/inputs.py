"""Stage "validate": check the caller's inputs and split off the validation share when none is given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sidyp_engine.data import stratified_holdout, validate_inputs, validate_texts
from sidyp_engine.types import CalibrationConfig, InvalidInputError


@dataclass
class Inputs:
    """Validated inputs. `texts`/`ids` are the caller's training rows in their order; `train_*` are the
    rows stage 1 fits, `valid_*` the validation rows (given, or held out of the training rows)."""

    texts: list[str]
    ids: np.ndarray  # [N] int64, -1 = missing label
    classes: list[str]
    train_texts: list[str]
    train_ids: np.ndarray
    valid_texts: list[str]
    valid_ids: np.ndarray
    extra_texts: list[str]
    is_validation: np.ndarray  # [N] bool: held out of the training rows (all False when valid is given)
    fit_rows: np.ndarray  # caller's row numbers of train_texts

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def y_train(self) -> torch.Tensor:
        return torch.from_numpy(self.train_ids)

    @property
    def y_valid(self) -> torch.Tensor:
        return torch.from_numpy(self.valid_ids)


def validate(
    cfg: CalibrationConfig,
    train_texts: Sequence[str],
    train_labels: Sequence[str | None],
    classes: Sequence[str],
    valid_texts: Sequence[str] | None,
    valid_labels: Sequence[str | None] | None,
    extra_texts: Sequence[str] | None,
) -> Inputs:
    """Raise InvalidInputError naming the rows at fault, or return the validated, split inputs."""
    texts, ids, names = validate_inputs(train_texts, train_labels, classes, what="train")
    if (valid_texts is None) != (valid_labels is None):
        raise InvalidInputError("pass both valid_texts and valid_labels, or neither")
    extra = validate_texts(extra_texts, "extra") if extra_texts is not None and len(extra_texts) else []
    if valid_texts is not None:
        v_texts, v_ids, _ = validate_inputs(
            valid_texts, valid_labels, names, what="validation", min_trainable_classes=0
        )
        return Inputs(
            texts, ids, names, texts, ids, v_texts, v_ids, extra, np.zeros(len(texts), dtype=bool),
            np.arange(len(texts)),
        )  # fmt: skip
    return _hold_out(cfg, texts, ids, names, extra)


def _hold_out(cfg: CalibrationConfig, texts: list[str], ids: np.ndarray, names: list[str], extra) -> Inputs:
    is_validation = stratified_holdout(ids, cfg.valid_fraction, cfg.seed)
    fit_rows = np.flatnonzero(~is_validation)
    hold_rows = np.flatnonzero(is_validation)
    tr_texts, tr_ids = [texts[i] for i in fit_rows], ids[fit_rows]
    # the holdout may take rows a small class needed: re-check what is left is still trainable
    try:
        validate_inputs(tr_texts, [names[i] if i >= 0 else None for i in tr_ids], names)
    except InvalidInputError as err:
        raise InvalidInputError(
            f"{err.message} after holding out {int(is_validation.sum())} validation rows; "
            "add examples or pass a validation set",
            rows=[int(fit_rows[r]) for r in err.rows],  # back to the caller's row numbers
            column=err.column,
        ) from None
    return Inputs(
        texts, ids, names, tr_texts, tr_ids, [texts[i] for i in hold_rows], ids[hold_rows], extra,
        is_validation, fit_rows,
    )  # fmt: skip


def fit_labels(inputs: Inputs, trusted_ids: np.ndarray | None) -> np.ndarray:
    """The noisy label ids the stage-1 ensemble and the probe fit: trusted rows' labels left out (-1).

    The trusted rows decide the selection and fit the temperatures, so they must be texts no candidate
    learned: fitted to their noisy labels, the plain branch (and the served model it seeds) would
    reproduce those labels on exactly these rows and the fit would read them as less accurate than
    they are. Their texts still count in the co-regularisation, as unlabelled rows do.
    """
    if trusted_ids is None:
        return inputs.train_ids
    return np.where(trusted_ids[inputs.fit_rows] >= 0, -1, inputs.train_ids)


def corrected_labels(inputs: Inputs, trusted_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) label ids with each trusted row's trusted label in place of its given one.
    Validation rows carry trusted labels only when they were held out of the caller's training rows."""

    def corrected(given: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.where(trusted_ids[rows] >= 0, trusted_ids[rows], given)

    held = np.flatnonzero(inputs.is_validation)
    valid = corrected(inputs.valid_ids, held) if len(held) else inputs.valid_ids
    return corrected(inputs.train_ids, inputs.fit_rows), valid


def count_truncated(tokenizer, texts: Sequence[str], max_length: int) -> int:
    """Texts longer than `max_length` tokens (special tokens included): the model sees only their start."""
    if not texts:
        return 0
    # verbose=False: long texts are what is being counted, not worth the tokenizer's warning
    enc = tokenizer(list(texts), truncation=False, padding=False, return_attention_mask=False, verbose=False)
    return sum(len(ids) > max_length for ids in enc["input_ids"])
