"""Do no harm: deliver the plain noisy-label classifier unless the method is where it has helped.

Two decisions, each between the method's output and the plain one:
  labels: the refined posterior ("refined") or the plain fine-tune's P(ỹ | x) ("plain");
  model:  the distilled served model ("served") or the plain fine-tune as it is ("plain_model").
The plain fine-tune is stage 1 with one branch (`stages.ensemble.plain_config`): what a user gets by
fine-tuning on the labels as they are, so keeping it never delivers less than plain fine-tuning.
The rule (`select`, the same for both): plain when fewer than METHOD_MIN_NOISE of the labels are wrong
(measured on the trusted rows, else the run's own estimate); with trusted rows, whichever side is better
on them in at least 95 % of paired bootstrap resamples, the gate deciding only where neither is. Where
they settle the labels and not the model, the model follows the labels (the served model is the refined
labels' distillation) unless the two models' accuracies on them point the other way.
Gold-free, the gate also opens where the refined posteriors expect the refined labels far ahead of the
plain ones (`METHOD_MIN_EXPECTED_GAIN`; the report then asks for trusted rows to confirm it), and a plain
choice goes back to the method's output where plain has starved a class the labeller uses that the
method's refined labels and served model both keep (`STARVED_RATIO`). The accuracy estimates of
`sidyp_engine.estimates` (gold-free: what the refined posteriors expect, and the method of moments; or plain
accuracy on trusted rows) are computed for every candidate and reported; gold-free, only the expected
gain above decides (docs/method.md, "Do no harm", "Thirty-ninth round"). A gold-free estimate's point is
the refined posteriors' and its interval spans both estimators' row-sampling intervals: neither includes
its own bias, so where they disagree the interval says so. A third candidate for both, the linear probe
("probe": a logistic regression on the frozen embeddings), replaces the choice where it is clearly better:
on the trusted rows, or gold-free against the plain classifier by agreement with the noisy validation
labels (`_probe_choice`).

The refined candidate is scored by its posterior *without* the row's own label (marginal over the
classifier's P(ỹ | x), as for an unseen text): the moment estimator needs predictions that did not read
the noisy label they are compared with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sidyp_engine import estimates
from sidyp_engine.estimates import Estimate

PLAIN, REFINED, SERVED, PLAIN_MODEL, PROBE = "plain", "refined", "served", "plain_model", "probe"
# decision -> (its plain candidate, the method's); labels first, the model may follow them
DECISIONS = {"labels": (PLAIN, REFINED), "model": (PLAIN_MODEL, SERVED)}
# what each candidate is, in the words the report page and the demo show
CANDIDATE_DESCRIPTIONS = {
    REFINED: "the refined labels (SiDyP)",
    PLAIN: "the plain classifier's labels",
    SERVED: "the distilled served model",
    PLAIN_MODEL: "the plain classifier (fine-tuned on the given labels)",
    PROBE: "the linear probe (a logistic regression on the frozen sentence embeddings)",
}


def refit_summary(labels: str | None, model: str) -> str:
    """What the trusted rows fitted again (`Selection.refit`: the labels' and the model's candidate), in words."""
    owners = {PLAIN: "the plain classifier", PLAIN_MODEL: "the plain classifier", PROBE: "the linear probe"}
    if labels is not None and owners[labels] == owners.get(model):
        return f"{owners[labels]}'s labels and model"
    words = [f"{owners[labels]}'s labels"] if labels is not None else []
    words.append("the distilled served model" if model == SERVED else f"{owners[model]}'s model")
    return " and ".join(words)


CONFIDENCE = 0.95
# Gold-free gate: the method's outputs are delivered only when the run itself finds at least this share of
# the labels wrong. On the development sets the method lost to the plain classifier wherever the run
# estimated <= 0.34 (5 %, 15 % and 20 % true noise) and gained where it estimated >= 0.43 (40 %, 53 %, 56 %);
# below it, refinement mostly relabels right labels (docs/method.md, "The noise gate").
METHOD_MIN_NOISE = 0.40
# A gold-free reading this close to METHOD_MIN_NOISE is a close call: the report says the choice could have
# gone the other way and asks for trusted rows. The reading has missed the true share by 1-24 points where
# the truth is 30-40 % (median 10); a band that wide would mark most runs, so it is half of that
# (docs/method.md, "Thirteenth round").
GATE_CLOSE_BAND = 0.05
# Gold-free, where the wrong-label reading is under METHOD_MIN_NOISE but the refined posteriors expect the
# refined labels at least this much more accurate than the plain ones, the gate opens all the same, and
# the report asks for trusted rows to confirm it. That view over-states the method where most labels are
# right, so only a gain this large decides; on the development runs that read it the method was the better
# on validation gold or level (docs/method.md, "Thirty-ninth round").
METHOD_MIN_EXPECTED_GAIN = 0.10
# ... read on at least this many validation rows: a gain read on a handful of rows (`make demo`'s 19) is
# noise; the development runs had 178 or more.
EXPECTED_GAIN_MIN_ROWS = 80
# The gate opens only where the method has enough labelled training rows per class to work with: its k-NN
# prior votes over the rows it reads as clean, and its noise matrix has C x C cells to fill. On 500- and
# 1,000-row subsets of the development sets the refined labels lost to plain fine-tuning on most runs,
# while the run's wrong-label reading rose with the posteriors' uncertainty and opened the gate
# (docs/method.md, "Thirty-fifth round"). Below this many, plain is kept whatever that reading; trusted
# rows that find the method clearly better still keep the method.
METHOD_MIN_ROWS_PER_CLASS = 150
# The plain classifier has starved a class when it predicts it for fewer than STARVED_RATIO of the
# validation rows the labeller gives it, for a class the labeller gives at least STARVED_MIN_SHARE of them:
# trained on those very labels, it has not learnt the class at all (semeval's two-class development set:
# 0.6 % against the labeller's 8.5 %, macro-F1 0.41). Refinement moves class shares away from the labeller's
# on purpose, so its shares are no evidence against it and only plain is checked. Where the gate kept plain
# and the method's refined labels and served model both predict the class at least that often, the
# method's output is kept instead (docs/method.md, "Sixteenth round"); the served model alone is not
# enough, it is distilled from the refined posteriors and a few predictions of a class they starve are
# noise ("Seventeenth round": a labeller's over-used class). The class needs STARVED_MIN_ROWS such rows:
# on `make demo`'s 19 validation rows, 1 prediction against the labeller's 4 met the ratio by chance, and
# the method harmed there.
STARVED_MIN_SHARE = 0.05
STARVED_RATIO = 1 / 3
STARVED_MIN_ROWS = 10

# `Selection.temperature_source` without trusted rows; the second where the served model's confidence
# follows its moment estimate (the refined posteriors are vote shares without the noise model)
GOLD_FREE_TEMPERATURE = "gold-free reference"
SERVED_MOMENTS_TEMPERATURE = "gold-free reference; the served model's confidence follows its moment estimate"
# appended to a gold-free source where the kept model's confidence was matched on the evaluation texts
CARRIED_TEMPERATURE = "; matched on the evaluation texts to its estimate carried there (ATC)"


@dataclass
class Selection:
    kept_labels: str  # REFINED or PLAIN
    kept_model: str  # SERVED or PLAIN_MODEL
    reason: str
    estimates: dict[str, Estimate]
    llm_label_accuracy: Estimate
    noise_share: Estimate
    margins: dict[str, float]  # 5th percentile of plain minus method, per decision
    temperature_source: str = GOLD_FREE_TEMPERATURE  # what the models' temperatures were fitted against
    method_noise_share: float | None = None  # the run's own wrong-label estimate the gate read
    moment_estimates: dict[str, Estimate] | None = None  # gold-free, the method of moments (for comparison)
    # the kept model's accuracy on the extra (evaluation) texts, carried there from the trusted rows
    evaluation_estimate: Estimate | None = None
    # every candidate on the evaluation texts: carried gold-free, or transferred from trusted rows (the kept
    # model's entry is the one above)
    evaluation_estimates: dict[str, Estimate] = field(default_factory=dict)
    # gold-free, the gate's reading was within GATE_CLOSE_BAND of METHOD_MIN_NOISE
    gate_close: bool = False
    # gold-free, the wrong-label reading was under METHOD_MIN_NOISE but the refined posteriors expect the
    # refined labels at least METHOD_MIN_EXPECTED_GAIN more accurate, which opened the gate: that gain, else None
    expected_gain: float | None = None
    # with trusted rows: do they look like a random draw (`estimates.trusted_sample_check`)
    trusted_sample: dict | None = None
    # gold-free, per decision the gate's plain choice was overturned for: the classes plain starved
    starved: dict[str, list[dict]] = field(default_factory=dict)
    # with trusted rows: the kept candidates fitted again on every row with the trusted labels in place
    # (`stages.select.with_refits`: trusted_rows, labels (None: the refined ones, not refitted), model and its
    # temperature), else None
    refit: dict | None = None
    # labelled training rows per class, and whether the gate kept plain for too few of them
    # (METHOD_MIN_ROWS_PER_CLASS)
    rows_per_class: float | None = None
    few_rows: bool = False

    def as_dict(self) -> dict:
        return {
            "kept": self.kept_labels,
            "kept_model": self.kept_model,
            "reason": self.reason,
            "rule": (
                f"plain unless >= {METHOD_MIN_NOISE:.0%} of the labels are wrong (measured on trusted rows, "
                f"else the run's estimate, or without trusted rows the refined posteriors expect the refined "
                f"labels >= {METHOD_MIN_EXPECTED_GAIN * 100:.0f} points more accurate and drop no class the "
                f"labeller uses) and there are >= {METHOD_MIN_ROWS_PER_CLASS} labelled training rows per "
                f"class; with trusted rows, whichever is better on them in >= "
                f"{CONFIDENCE:.0%} of paired bootstrap resamples (the model following the labels where only "
                f"the labels are settled, unless the models' accuracies on them disagree); without them, not a "
                f"plain classifier that predicts a class for under {STARVED_RATIO:.0%} of the rows the labeller gives it (a class with "
                f">= {STARVED_MIN_SHARE:.0%} and >= {STARVED_MIN_ROWS} of them) where neither the refined labels "
                f"nor the served model does"
            ),
            "estimates": {name: e.as_dict() for name, e in self.estimates.items()},
            "llm_label_accuracy": self.llm_label_accuracy.as_dict(),
            "noise_share": self.noise_share.as_dict(),
            "margins": {k: round(v, 4) for k, v in self.margins.items()},
            "temperature_source": self.temperature_source,
            "method_noise_share": self.method_noise_share,  # unrounded: it is the report's noise_share
            "moment_estimates": {name: e.as_dict() for name, e in (self.moment_estimates or {}).items()},
            "evaluation_estimate": None
            if self.evaluation_estimate is None
            else self.evaluation_estimate.as_dict(),
            "gate_close": self.gate_close,
            "expected_gain": None if self.expected_gain is None else round(self.expected_gain, 4),
            "evaluation_estimates": {name: e.as_dict() for name, e in self.evaluation_estimates.items()},
            "trusted_sample": self.trusted_sample,
            "starved": self.starved,
            "refit": self.refit,
            "rows_per_class": None if self.rows_per_class is None else round(self.rows_per_class, 1),
            "few_rows": self.few_rows,
        }


def _accuracies(pred, noisy, trusted, noise_matrix, idx) -> np.ndarray:
    """The estimate's point value on every resample `idx` [B, n] of the rows."""
    if trusted is not None:
        known = trusted[idx] >= 0
        right = (pred[idx] == trusted[idx]) & known
        return right.sum(axis=1) / np.maximum(known.sum(axis=1), 1)
    joints = estimates.resampled_joints(pred, noisy, idx, noise_matrix.shape[0])
    return estimates.moment_accuracies(joints, noise_matrix)


def plain_margin(
    plain: np.ndarray,
    method: np.ndarray,
    noisy: np.ndarray,
    noise_matrix: np.ndarray,
    trusted: np.ndarray | None = None,
    seed: int = 0,
) -> float:
    """The (1 - CONFIDENCE) quantile of acc(plain) - acc(method) over paired bootstrap resamples."""
    if trusted is not None and not (trusted >= 0).any():
        trusted = None
    idx = estimates.resamples(len(noisy), seed)
    diffs = _accuracies(plain, noisy, trusted, noise_matrix, idx) - _accuracies(
        method, noisy, trusted, noise_matrix, idx
    )
    return float(np.percentile(diffs, 100 * (1 - CONFIDENCE)))


def select(
    predictions: dict[str, np.ndarray],
    noisy: np.ndarray,
    noise_matrix: np.ndarray,
    trusted: np.ndarray | None = None,
    seed: int = 0,
    gold_free_may_switch: bool = False,
    method_wrong_share: Estimate | None = None,
    reference: np.ndarray | None = None,
    classes: list[str] | None = None,
    refined_unforced: np.ndarray | None = None,
    rows_per_class: float | None = None,
) -> Selection:
    """Decide labels and model from validation-row predictions (class ids) of every candidate.

    `predictions` holds PLAIN and REFINED, and SERVED / PLAIN_MODEL when there is a model to choose;
    `noisy` the rows' noisy label ids (-1 = none), `trusted` their trusted label ids (-1 = not trusted).
    Plain is kept when it is clearly better on the trusted rows (when there are any) and, with
    `gold_free_may_switch` (config `selection="auto"`, the default), when the wrong-label share is below
    METHOD_MIN_NOISE and the method is not clearly better on the trusted rows (when there are any); the
    share is measured on the trusted rows, else the run's own estimate `method_wrong_share`
    (which is then also the reported wrong-label share, and its complement the LLM labels' accuracy).
    The gold-free estimates are computed and reported, never acted on: with `reference` (the rows'
    refined posteriors) each candidate's expected accuracy under it, else the method of moments (always
    kept as `moment_estimates`). `selection="trusted"` acts on trusted rows only, without the gate.
    Gold-free, a plain choice of the gate that starved a class the method keeps goes to the method
    (`STARVED_RATIO`); `classes` names them in the reason. `refined_unforced`: the refined labels without
    the floor on texts read without a label, which the starved-class check reads in REFINED's place (a
    class the floor raised to the labeller's share is not one the method found). `rows_per_class`: the
    labelled training rows per class; under METHOD_MIN_ROWS_PER_CLASS the gate keeps plain whatever the
    wrong-label share, and neither a starved class nor an expected gain is read (the method's own view is
    what small data leaves in doubt). Gold-free, a wrong-label share under METHOD_MIN_NOISE keeps plain
    unless the refined posteriors expect the refined labels METHOD_MIN_EXPECTED_GAIN or more ahead and
    those labels (`refined_unforced` where given) starve no class the labeller uses (`STARVED_RATIO`).
    """
    noisy = np.asarray(noisy)
    t = np.asarray(noise_matrix, dtype=np.float64)
    has_trusted = trusted is not None and bool((np.asarray(trusted) >= 0).any())
    trusted = np.asarray(trusted) if has_trusted else None
    if not has_trusted:  # the gold-free estimate reads rows with a noisy label only
        keep = noisy >= 0
        predictions = {name: np.asarray(pred)[keep] for name, pred in predictions.items()}
        refined_unforced = None if refined_unforced is None else np.asarray(refined_unforced)[keep]
        noisy = noisy[keep]
        reference = None if reference is None else np.asarray(reference)[keep]
    found = {
        name: estimates.accuracy_estimate(pred, noisy, t, trusted, seed) for name, pred in predictions.items()
    }
    if not has_trusted and method_wrong_share is not None:
        # the moments may not contradict the run's own wrong-label share, which the report leads with
        found = {
            name: estimates.held_to_wrong_share(
                found[name], predictions[name], noisy, method_wrong_share.accuracy
            )
            for name in found
        }
    moments = found
    if not has_trusted and reference is not None and len(reference):
        # closer to the measured accuracy than the moments on every development run (docs/method.md); the
        # interval spans both estimators' (docs/method.md, "Intervals that say how far to trust them")
        found = {
            name: estimates.spanning(estimates.reference_accuracy(pred, reference, seed), moments[name])
            for name, pred in predictions.items()
        }
    if has_trusted:
        labels = estimates.trusted_accuracy(noisy, np.where(noisy >= 0, trusted, -1))
    elif method_wrong_share is not None:  # closer than the moments on every design run (docs/method.md)
        labels = estimates.spanning(method_wrong_share.complement(), estimates.label_accuracy(noisy, t, seed))
    else:
        labels = estimates.label_accuracy(noisy, t, seed)
    may_switch = has_trusted or gold_free_may_switch
    # the gate's wrong-label share: measured on the trusted rows when there are any, else the run's own
    gate_share = labels.complement().accuracy if has_trusted or method_wrong_share is not None else None
    basis = "trusted" if has_trusted else ("posterior" if found is not moments else "moments")
    few_rows = (
        gold_free_may_switch and rows_per_class is not None and rows_per_class < METHOD_MIN_ROWS_PER_CLASS
    )
    below_share = gold_free_may_switch and gate_share is not None and gate_share < METHOD_MIN_NOISE
    refined_read = predictions.get(REFINED) if refined_unforced is None else refined_unforced
    expected_gain = (
        _expected_gain(found, basis, refined_read, noisy, t.shape[0])
        if below_share and not few_rows
        else None
    )
    gated = few_rows or (below_share and expected_gain is None)
    gate_close = (  # a gate the expected gain opened did not turn on the share
        gold_free_may_switch
        and not has_trusted
        and not few_rows
        and expected_gain is None
        and gate_share is not None
        and abs(gate_share - METHOD_MIN_NOISE) < GATE_CLOSE_BAND
    )
    margins: dict[str, float] = {}
    kept = {}
    # per decision, (plain clearly better, method clearly better) on the trusted rows
    clear: dict[str, tuple[bool, bool]] = {}
    followed = False
    for decision, (plain, method) in DECISIONS.items():
        if plain not in predictions or method not in predictions or not (noisy >= 0).any():
            kept[decision] = method
            continue
        margins[decision] = plain_margin(predictions[plain], predictions[method], noisy, t, trusted, seed)
        # gold-free, the moment estimates are reported but never overturn the method: on the shared sets
        # they put plain clearly ahead where the method gains 6 points (docs/method.md, "The noise gate")
        plain_clearly_better, method_clearly_better = margins[decision] > 0 and has_trusted, False
        if has_trusted:
            # trusted rows measure both sides: a method clearly better on them is kept whatever the gate
            # reads (the gate is a share of wrong labels, a proxy for that very difference; docs/method.md,
            # "Twenty-seventh round")
            margins[f"{decision}_method"] = plain_margin(
                predictions[method], predictions[plain], noisy, t, trusted, seed
            )
            method_clearly_better = margins[f"{decision}_method"] > 0
        if decision == "model" and not (plain_clearly_better or method_clearly_better):
            followed = _follows_labels(clear.get("labels", (False, False)), gated, found, plain, method)
            if followed:
                plain_clearly_better, method_clearly_better = clear["labels"]
        clear[decision] = (plain_clearly_better, method_clearly_better)
        switch = (gated and not method_clearly_better) or plain_clearly_better
        kept[decision] = plain if may_switch and switch else method
    starved = (
        _starved_choice(kept, predictions, noisy, t.shape[0], refined_unforced)
        if gated and not has_trusted and not few_rows
        else {}
    )
    probe_note = _probe_choice(kept, predictions, noisy, t, trusted, seed, may_switch, margins)
    reason = _reason(kept, found, basis, margins, starved, classes, followed) + probe_note
    who = "the trusted rows show" if has_trusted else "the run estimates"
    if expected_gain is not None:
        reason = (
            f"{who} {gate_share:.0%} of the labels wrong, below the {METHOD_MIN_NOISE:.0%} where refinement "
            f"has helped, but the refined posteriors expect the refined labels {expected_gain * 100:.0f} points "
            f"more accurate than the plain classifier's, at least the {METHOD_MIN_EXPECTED_GAIN * 100:.0f} that "
            "has meant a gain on development sets, so the method is kept; " + reason
        )
    elif gold_free_may_switch and gate_share is not None and not gated:
        reason = (
            f"{who} {gate_share:.0%} of the labels wrong, at least the {METHOD_MIN_NOISE:.0%} where "
            "refinement has helped; " + reason
        )
    if gated:
        unless = " unless it has not learnt a class the labeller uses" if starved else ""
        if has_trusted and any(margins.get(f"{d}_method", 0.0) > 0 for d in ("labels", "model")):
            unless = " unless the method is clearly better on them"
        if few_rows:
            read = "" if gate_share is None else f"; {who} {gate_share:.0%} of the labels wrong"
            why = (
                f"the run has {rows_per_class:.0f} labelled training rows per class, under the "
                f"{METHOD_MIN_ROWS_PER_CLASS} where refinement has helped{read}"
            )
        else:
            why = f"{who} {gate_share:.0%} of the labels wrong, below the {METHOD_MIN_NOISE:.0%} where refinement has helped"
        reason = f"{why}, so the plain classifier is kept{unless}; " + reason
    if not has_trusted and not gold_free_may_switch:
        reason += (
            "; without trusted rows the gold-free estimates are reported, not acted on (selection='trusted')"
        )
    return Selection(
        kept["labels"],
        kept["model"],
        reason,
        found,
        labels,
        labels.complement(),
        margins,
        method_noise_share=None if method_wrong_share is None else method_wrong_share.accuracy,
        moment_estimates=None if has_trusted else moments,
        gate_close=bool(gate_close),
        starved=starved,
        expected_gain=expected_gain,
        rows_per_class=rows_per_class,
        few_rows=bool(few_rows),
    )


def _expected_gain(
    found: dict[str, Estimate], basis: str, refined: np.ndarray | None, noisy: np.ndarray, n_classes: int
) -> float | None:
    """The refined labels' expected gain over the plain ones in the refined posteriors' view (`basis`
    "posterior", gold-free), where it is at least METHOD_MIN_EXPECTED_GAIN on EXPECTED_GAIN_MIN_ROWS rows
    or more and the `refined` labels starve no class the labeller uses; None otherwise. The moments' view
    was not where the threshold was chosen."""
    if basis != "posterior" or PLAIN not in found or REFINED not in found or refined is None:
        return None
    if found[PLAIN].rows < EXPECTED_GAIN_MIN_ROWS:
        return None
    gain = found[REFINED].accuracy - found[PLAIN].accuracy
    if gain < METHOD_MIN_EXPECTED_GAIN:
        return None
    # the posteriors' view of their own labels cannot see that those dropped a class the labeller uses:
    # the collapse the method's early runs showed on held-out sets (docs/method.md, "Thirty-ninth round")
    return None if starved_classes(refined, noisy, n_classes) else float(gain)


def _follows_labels(
    labels_clear: tuple[bool, bool], gated: bool, found: dict[str, Estimate], plain: str, method: str
) -> bool:
    """Whether the model decision, which the trusted rows settle neither way, takes the labels decision's
    side (`labels_clear`: plain, method clearly better on them) instead of the gate's. The served model is
    the refined labels' distillation, so where the trusted rows settle the labels their reading stands for
    the model too; not where the two models' own accuracies on them (`found`) order them the other way
    (docs/method.md, "Twenty-ninth round")."""
    plain_side, method_side = labels_clear
    if not (plain_side or method_side) or plain_side == gated:  # nothing settled, or the gate's side already
        return False
    ahead, behind = (plain, method) if plain_side else (method, plain)
    return found[ahead].accuracy >= found[behind].accuracy


def starved_classes(pred: np.ndarray, noisy: np.ndarray, n_classes: int) -> list[dict]:
    """Classes the labeller gives >= STARVED_MIN_SHARE and >= STARVED_MIN_ROWS of the labelled rows that
    `pred` predicts for fewer than STARVED_RATIO of that share: [{"class": id, "predicted_share",
    "label_share"}]."""
    labelled = np.asarray(noisy) >= 0
    if not labelled.any():
        return []
    label_rows = np.bincount(np.asarray(noisy)[labelled], minlength=n_classes)
    label_share = label_rows / labelled.sum()
    predicted_share = np.bincount(np.asarray(pred)[labelled], minlength=n_classes) / labelled.sum()
    return [
        {
            "class": c,
            "predicted_share": round(float(predicted_share[c]), 4),
            "label_share": round(float(q), 4),
        }
        for c, q in enumerate(label_share[:n_classes])
        if q >= STARVED_MIN_SHARE
        and label_rows[c] >= STARVED_MIN_ROWS
        and predicted_share[c] < STARVED_RATIO * q
    ]


def _class_name(class_id: int, classes: list[str] | None) -> str:
    return f"'{classes[class_id]}'" if classes and class_id < len(classes) else f"class {class_id}"


def _starved_choice(kept, predictions, noisy, n_classes: int, refined_unforced=None) -> dict[str, list[dict]]:
    """Gold-free, after the gate: the method's output replaces a plain choice that starved a class every
    output of the method keeps (STARVED_RATIO): the refined labels and the served model both. The served
    model is distilled from the refined posteriors; where those starve the class, its own few predictions
    of it are not the method's judgement (a labeller's over-used class that plain rightly declines).
    The refined labels are read without the floor on unlabelled texts (`refined_unforced`) when given.
    Returns, per decision switched, the classes plain starved."""
    switched = {}
    outputs = {name: predictions[name] for name in (REFINED, SERVED) if name in predictions}
    if refined_unforced is not None and REFINED in outputs:
        outputs[REFINED] = refined_unforced
    starved_by_method = {
        c["class"] for pred in outputs.values() for c in starved_classes(pred, noisy, n_classes)
    }
    for decision, (plain, method) in DECISIONS.items():
        if kept.get(decision) != plain or method not in predictions:
            continue
        starved = [
            c
            for c in starved_classes(predictions[plain], noisy, n_classes)
            if c["class"] not in starved_by_method
        ]
        if starved:
            kept[decision] = method
            switched[decision] = starved
    return switched


def agreement_margin(a: np.ndarray, b: np.ndarray, noisy: np.ndarray, seed: int = 0) -> float:
    """The (1 - CONFIDENCE) quantile of agreement(a) - agreement(b) with the noisy labels, paired bootstrap."""
    labelled = noisy >= 0
    a, b, noisy = np.asarray(a)[labelled], np.asarray(b)[labelled], noisy[labelled]
    if not len(noisy):
        return float("-inf")
    idx = estimates.resamples(len(noisy), seed)
    diffs = (a[idx] == noisy[idx]).mean(axis=1) - (b[idx] == noisy[idx]).mean(axis=1)
    return float(np.percentile(diffs, 100 * (1 - CONFIDENCE)))


def _probe_choice(kept, predictions, noisy, t, trusted, seed, may_switch, margins) -> str:
    """Replace a decision's choice by the linear probe where it is clearly better; returns the reason's note.

    With trusted rows: against whatever was kept, on them. Gold-free: only against the plain classifier
    (the gate's choice), by agreement with the noisy validation labels. The probe cannot bend to the
    labeller's habits the way a fine-tuned encoder can, so where it still agrees more with the held-out
    noisy labels it is the better classifier; against the refined output that argument does not hold
    (refinement disagrees with the labels on purpose), so there it never switches without trusted rows.
    """
    if PROBE not in predictions or not may_switch:
        return ""
    notes = []
    for decision, plain in (("labels", PLAIN), ("model", PLAIN_MODEL)):
        current = kept.get(decision)
        if current is None or current not in predictions:
            continue
        if trusted is not None:
            margin = plain_margin(predictions[PROBE], predictions[current], noisy, t, trusted, seed)
            evidence = "on the trusted rows"
        elif current == plain:
            margin = agreement_margin(predictions[PROBE], predictions[current], noisy, seed)
            evidence = "in agreement with the held-out noisy labels"
        else:
            continue
        margins[f"probe_{decision}"] = margin
        if margin > 0:
            kept[decision] = PROBE
            notes.append(f"{decision}: the linear probe, clearly better than {current} {evidence}")
    return "".join(f"; {n}" for n in notes)


_SOURCES = {
    "trusted": "the trusted rows",
    "posterior": "the refined posteriors of the validation rows",
    "moments": "the noisy validation labels and the noise matrix",
}


def _reason(
    kept: dict[str, str],
    found: dict[str, Estimate],
    basis: str,
    margins: dict[str, float],
    starved: dict[str, list[dict]] | None = None,
    classes: list[str] | None = None,
    followed: bool = False,
) -> str:
    """`followed`: the model decision took the labels decision's clear result on the trusted rows."""
    source, has_trusted = _SOURCES[basis], basis == "trusted"
    parts = []
    for decision, name in kept.items():
        plain, method = DECISIONS[decision]
        if name == PROBE:  # the probe's own note follows
            continue
        if followed and decision == "model":
            which = "the plain classifier" if name == PLAIN_MODEL else method
            parts.append(
                f"model: {which}, following the labels ({method} {found[method].accuracy:.3f}; plain "
                f"{found[plain].accuracy:.3f} on the trusted rows, which settle neither model clearly)"
            )
            continue
        if starved and decision in starved:
            which = ", ".join(
                f"{_class_name(c['class'], classes)} for {c['predicted_share']:.1%} of the validation rows where the labeller "
                f"gives {c['label_share']:.1%}"
                for c in starved[decision]
            )
            parts.append(f"{decision}: {method}, as the plain classifier predicts {which}")
            continue
        if name in (PLAIN, PLAIN_MODEL):
            clearly = has_trusted and margins.get(decision, 0.0) > 0
            how = "clearly better on the trusted rows" if clearly else "kept by the gate"
            # the posterior estimates are the method's own view; where the gate keeps plain it has judged
            # that view to over-state refinement, so a higher figure for the method does not overrule it
            aside = ""
            if basis == "posterior" and found[plain].accuracy < found[method].accuracy:
                aside = ": the refined posteriors' view, which the gate sets aside"
            parts.append(
                f"{decision}: the plain classifier, {how} "
                f"(estimated {found[plain].accuracy:.3f}; {method} {found[method].accuracy:.3f}{aside})"
            )
        elif plain in found and method in found:
            why = "not clearly better" if has_trusted else "gold-free estimates are not acted on"
            if has_trusted and margins.get(f"{decision}_method", 0.0) > 0:
                why = "clearly better on the trusted rows"
            parts.append(
                f"{decision}: {method} ({found[method].accuracy:.3f}; plain {found[plain].accuracy:.3f}, {why})"
            )
        else:
            parts.append(f"{decision}: {method} (no plain candidate to compare)")
    return f"estimated from {source}; " + "; ".join(parts)


def apply_to_rows(
    posteriors: np.ndarray,
    plain_posteriors: np.ndarray,
    given: np.ndarray,
    trusted: np.ndarray | None,
    kept_labels: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(posteriors, suggested ids, is_label_issue) per training row after the labels decision.

    Rows with a trusted label are never flagged and their suggestion is the trusted label.
    """
    rows = plain_posteriors if kept_labels == PLAIN else posteriors
    suggested = rows.argmax(axis=1)
    is_issue = (given >= 0) & (suggested != given)
    if trusted is not None:
        known = trusted >= 0
        suggested = np.where(known, trusted, suggested)
        is_issue &= ~known
    return rows, suggested, is_issue
