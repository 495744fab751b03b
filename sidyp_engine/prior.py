"""Stage 2b: the dynamic prior, a distance-weighted k-NN vote over the likely-clean examples.

Its candidate sets drive the refiner: a confident vote (max >= 0.9) makes the example 'certain' with one
candidate, a confident pair (top-two sum >= 0.8) gives two candidates, anything else keeps all classes.
An example never votes for itself (leave-one-out): otherwise every clean example would simply get its
own noisy label back as a one-hot prior, which is what the published code ends up doing. The same holds
for an exact copy of its text elsewhere in the training set (distance 0, the largest weight), so rows
are grouped by text (`text_groups`) and every copy is left out; the copies in the index vote once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CERTAIN_THRESHOLD = 0.9
TWO_CANDIDATE_THRESHOLD = 0.8
# Distance floor for the 1/d weights: exact duplicates (distance 0) would otherwise get infinite weight.
MIN_DISTANCE = 1e-3
MAX_REBALANCE = 5.0  # the most a class's votes are amplified (balance_divisors)


@dataclass
class PriorOutput:
    probs: torch.Tensor  # [N, C] k-NN vote shares, rows sum to 1
    candidates: torch.Tensor  # [N, C] bool
    certain: torch.Tensor  # [N] bool: exactly one candidate


def candidate_sets(
    probs: torch.Tensor, labelled: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate rules on vote shares: (candidates [N, C] bool, certain [N] bool).

    Rows with `labelled` False (missing label) always get every class as a candidate: nothing is known
    about them beyond what the refiner will learn.
    """
    n, c = probs.shape
    top2 = torch.topk(probs, k=min(2, c), dim=1)
    certain = top2.values[:, 0] >= CERTAIN_THRESHOLD
    two = (~certain) & (top2.values.sum(dim=1) >= TWO_CANDIDATE_THRESHOLD)
    candidates = torch.ones(n, c, dtype=torch.bool)
    one_hot_top = torch.zeros(n, c, dtype=torch.bool).scatter_(1, top2.indices[:, :1], True)
    pair = torch.zeros(n, c, dtype=torch.bool).scatter_(1, top2.indices, True)
    candidates[certain] = one_hot_top[certain]
    candidates[two] = pair[two]
    if labelled is not None:
        unknown = ~labelled
        candidates[unknown] = True
        certain = certain & labelled
    return candidates, certain


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def text_groups(texts: list[str]) -> np.ndarray:
    """Per text, the id of its distinct text (same id = same text up to case and whitespace)."""
    ids: dict[str, int] = {}
    return np.array([ids.setdefault(" ".join(t.casefold().split()), len(ids)) for t in texts], dtype=np.int64)


@dataclass
class DistinctTexts:
    """The vote's index: one entry per distinct text, its copies' embeddings averaged."""

    embeddings: np.ndarray  # [G, D]
    labels: np.ndarray  # [G, C] the copies' label distribution
    groups: np.ndarray  # [G] sorted text-group ids


def distinct_texts(embeddings: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_classes: int):
    """Collapse copies of a text into one index entry, so a text present five times votes once."""
    ids, slot = np.unique(groups, return_inverse=True)
    size = np.bincount(slot, minlength=len(ids)).astype(np.float64)
    emb = np.zeros((len(ids), embeddings.shape[1]), dtype=np.float64)
    np.add.at(emb, slot, embeddings)
    dist = np.zeros((len(ids), n_classes), dtype=np.float64)
    np.add.at(dist, (slot, labels), 1.0)
    return DistinctTexts(emb / size[:, None], dist / size[:, None], ids)


def own_entry(index: DistinctTexts, groups: np.ndarray) -> np.ndarray:
    """Per query group, its entry in the index (-1: none): the rows must not vote for a copy of themselves."""
    pos = np.searchsorted(index.groups, groups).clip(max=len(index.groups) - 1)
    return np.where(index.groups[pos] == groups, pos, -1)


def balance_divisors(counts: np.ndarray, k: int) -> np.ndarray:
    """Per class, what its votes are divided by in the balanced vote (relative to the mean class).

    Dividing by the class's count undoes the labeller's over-use of some classes, but a class with one
    clean example would weigh ~mean-count times a typical one and take any row it neighbours. A class's
    votes are therefore amplified at most min(k / 2, MAX_REBALANCE) times: one neighbour then never
    outvotes a majority of the neighbourhood, and no class is inflated beyond the labeller biases
    measured (3-4.5x). Full rebalancing assumes equal true class shares, so a larger cap over-predicts a
    class the labeller merely under-uses (a rare positive class of a two-class task in a k = 50 space;
    docs/method.md, "Class-balanced k-NN votes").
    """
    mean = counts.sum() / len(counts)
    return np.maximum(counts, max(1.0, mean / min(k / 2.0, MAX_REBALANCE))) / mean


def knn_votes(
    index_embeddings: np.ndarray,
    index_labels: np.ndarray,
    queries: np.ndarray,
    n_classes: int,
    k: int,
    exclude: np.ndarray | None = None,
    balanced: bool = True,
) -> np.ndarray:
    """Distance-weighted k-NN vote shares [Q, C]; `exclude[q]` is an index row query q must not use (-1: none).

    `index_labels`: [M] class ids, or [M, C] label distributions (copies of a text merged into one entry).
    `balanced`: each vote is divided by its class's frequency in the index (floored, `balance_divisors`).
    The labeller over-uses some classes, so raw votes drown the rare ones and the prior collapses onto the
    labeller's bias (docs/method.md, "Class-balanced k-NN votes").

    Cosine geometry (Euclidean distance between L2-normalised vectors), exact search with faiss.
    """
    import faiss

    labels = np.asarray(index_labels)
    dist_labels = np.eye(n_classes)[labels] if labels.ndim == 1 else labels.astype(np.float64)
    base = _normalise(index_embeddings)
    q = _normalise(queries)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    extra = 1 if exclude is not None else 0
    kk = min(k + extra, base.shape[0])
    sq_dist, nbr = index.search(q, kk)
    dist = np.sqrt(np.maximum(sq_dist, 0.0))
    weights = 1.0 / np.maximum(dist, MIN_DISTANCE)
    valid = nbr >= 0
    if exclude is not None:
        valid &= nbr != exclude[:, None]
    # keep the first k usable neighbours of every query (one extra was fetched to replace itself)
    valid &= np.cumsum(valid, axis=1) <= k
    weights = np.where(valid, weights, 0.0)
    nbr = np.where(nbr >= 0, nbr, 0)
    votes = np.zeros((q.shape[0], n_classes), dtype=np.float64)
    for j in range(kk):  # one neighbour rank at a time: memory Q x C, not Q x k x C
        votes += weights[:, j, None] * dist_labels[nbr[:, j]]
    if balanced:
        votes /= balance_divisors(dist_labels.sum(axis=0), k)[None, :]
    totals = votes.sum(axis=1, keepdims=True)
    uniform = np.full(n_classes, 1.0 / n_classes)
    return np.where(totals > 0, votes / np.maximum(totals, 1e-12), uniform).astype(np.float32)


def vote_labels(noisy: np.ndarray, trusted: np.ndarray | None) -> np.ndarray:
    """The label each row votes with: its trusted label where the user checked it, else its noisy one."""
    return noisy if trusted is None else np.where(trusted >= 0, trusted, noisy)


def knn_prior(
    embeddings: torch.Tensor,
    noisy: torch.Tensor,
    clean_mask: torch.Tensor,
    n_classes: int,
    k: int = 10,
    queries: torch.Tensor | None = None,
    query_noisy: torch.Tensor | None = None,
    balanced: bool = True,
    groups: np.ndarray | None = None,
    trusted: np.ndarray | None = None,
) -> PriorOutput:
    """k-NN prior from the clean examples (`clean_mask`, with their noisy labels as votes).

    Without `queries`: the prior of every row of `embeddings`, leaving the row itself and every copy of
    its text out (`groups`, from `text_groups`; None = all texts distinct). With `queries` (e.g.
    validation or extra texts, not in the index): their priors, a training copy of the same text may vote;
    `query_noisy` (-1 = missing) marks which queries have a label, as unlabelled rows always keep all
    candidates. Copies of a text vote once. `trusted` (class id per row, -1 = none): rows the user
    checked are always clean, vote with their trusted label and, as rows, get it as a certain prior.
    """
    emb = torch.as_tensor(embeddings).float().numpy()
    labels = vote_labels(torch.as_tensor(noisy, dtype=torch.long).numpy(), trusted)
    clean = torch.as_tensor(clean_mask, dtype=torch.bool).numpy() & (labels >= 0)
    if trusted is not None:
        clean |= trusted >= 0
    if not clean.any():
        raise ValueError("the clean set is empty: nothing to fit the k-NN prior on")
    groups = np.arange(len(emb)) if groups is None else np.asarray(groups)
    rows = np.flatnonzero(clean)
    index = distinct_texts(emb[rows], labels[rows], groups[rows], n_classes)
    if queries is None:
        exclude = own_entry(index, groups)
        probs = knn_votes(index.embeddings, index.labels, emb, n_classes, k, exclude, balanced)
        probs = _trusted_one_hot(probs, trusted)
        labelled = torch.from_numpy(labels >= 0)
    else:
        q = torch.as_tensor(queries).float().numpy()
        probs = knn_votes(index.embeddings, index.labels, q, n_classes, k, balanced=balanced)
        labelled = (
            torch.as_tensor(query_noisy, dtype=torch.long) >= 0
            if query_noisy is not None
            else torch.ones(len(q), dtype=torch.bool)
        )
    probs_t = torch.from_numpy(probs)
    candidates, certain = candidate_sets(probs_t, labelled)
    return PriorOutput(probs=probs_t, candidates=candidates, certain=certain)


def _trusted_one_hot(probs: np.ndarray, trusted: np.ndarray | None) -> np.ndarray:
    """Rows with a trusted label: that label, certain (the user's check outranks any vote)."""
    if trusted is None or not (trusted >= 0).any():
        return probs
    rows = np.flatnonzero(trusted >= 0)
    probs = probs.copy()
    probs[rows] = 0.0
    probs[rows, trusted[rows]] = 1.0
    return probs


def fit_vote_smoothing(
    valid_probs: torch.Tensor, valid_noisy: torch.Tensor, noise_matrix: torch.Tensor | None = None
) -> float:
    """ε such that (1 - ε) · prior + ε / C best explains the noisy labels of the validation texts.

    Distance-weighted votes are over-confident, most of all in a fine-tuned space that clusters by
    noisy label; validation texts were never trained on, so how well their priors predict their (noisy)
    labels is an honest, gold-free measure of how far to trust a prior. A k-NN vote predicts the noisy
    label directly; a prior over true classes (the noise model's) predicts it through the noise matrix
    T = P(noisy | true): P(ỹ = j) = sum_y prior_y T[y, j] (no matrix = the identity). Maximum likelihood
    on a grid of ε in [0, 0.95]; 0 when no validation row has a label.
    """
    labelled = torch.as_tensor(valid_noisy, dtype=torch.long) >= 0
    if not labelled.any():
        return 0.0
    n_classes = valid_probs.shape[1]
    y = torch.as_tensor(valid_noisy)[labelled]
    probs = valid_probs[labelled].double()
    if noise_matrix is None:
        p, flat = probs[torch.arange(len(y)), y], torch.full((len(y),), 1.0 / n_classes, dtype=torch.float64)
    else:
        t = torch.as_tensor(noise_matrix).double()
        p, flat = (probs @ t)[torch.arange(len(y)), y], t.mean(dim=0)[y]
    grid = torch.linspace(0.0, 0.95, 96, dtype=torch.float64)
    ll = torch.log((1 - grid[:, None]) * p[None, :] + grid[:, None] * flat[None, :]).mean(dim=1)
    return float(grid[int(ll.argmax())])


def noise_matrix(
    posteriors: np.ndarray,
    noisy: np.ndarray,
    n_classes: int,
    diagonal_pseudocount: float = 1e-6,
    floor: float = 0.0,
) -> np.ndarray:
    """Soft confusion P(noisy = j | true = i) from posteriors over true classes of the labelled rows.

    `floor` is added to every cell and `diagonal_pseudocount` to the diagonal before normalising; the
    default tiny diagonal keeps rows of classes that never get posterior mass defined (identity).
    """
    labelled = noisy >= 0
    counts = np.full((n_classes, n_classes), floor, dtype=np.float64) + diagonal_pseudocount * np.eye(
        n_classes
    )
    np.add.at(counts.T, noisy[labelled], posteriors[labelled])  # counts[i, j] += P(true = i) for noisy j
    return counts / counts.sum(axis=1, keepdims=True)


@dataclass
class NoiseModelPrior:
    train: torch.Tensor  # [N, C] P(y | neighbours' labels, own label)
    queries: list[torch.Tensor]  # [Q, C] P(y | neighbours' labels) per query set
    noise_matrix: torch.Tensor  # [C, C] estimated P(noisy = j | true = i)
    class_prior: torch.Tensor  # [C] estimated P(true = i)


def noise_model_prior(
    embeddings: torch.Tensor,
    noisy: torch.Tensor,
    init_probs: torch.Tensor,
    n_classes: int,
    k: int = 10,
    queries: list[torch.Tensor] | None = None,
    max_iterations: int = 100,
    tolerance: float = 1e-4,
    diagonal_pseudocount: float = 20.0,
    groups: np.ndarray | None = None,
    trusted: np.ndarray | None = None,
    class_prior: np.ndarray | None = None,
    class_prior_strength: float | None = None,
) -> NoiseModelPrior:
    """Explain every neighbourhood's noisy labels with a class-conditional noise matrix (EM, Dawid-Skene style).

    An LLM's mistakes are habits of the labeller: its labels for true class i follow one distribution
    T[i, :] wherever the text is. A neighbourhood of true class i therefore shows T[i, :] among its
    noisy labels, and that mixture may be led by another class (semeval: the LLM calls Member-Collection
    texts Entity-Destination more often than Member-Collection). A vote reads the leading label there;
    the noise model reads the class whose row of T fits the mixture. Per row:
    log P(y) = log π_y + Σ_j v_j log T[y, j] (+ log T[y, ỹ] for rows with their own label) + const,
    v = the distance-weighted share of the k nearest labelled rows (the row itself excluded) with
    noisy label j. T is re-estimated from the posteriors (M step) until they stop moving.

    π, the class prior, is taken once from `init_probs` (the class-balanced k-NN prior of the likely-clean
    set) and kept fixed: re-estimating it too lets EM feed a class's share back into its own posteriors
    until one class absorbs the rest (measured on semeval and on planted data). `diagonal_pseudocount`
    rows per class are added to T's diagonal, a Dirichlet prior that the labeller is right more often
    than not, which decides between solutions that only permute classes. `class_prior` [C] replaces the
    vote's π; with `class_prior_strength` s, π is re-estimated in every M step with a Dirichlet prior of
    s times the labelled rows at the starting π (research: `benchmarks.research.class_prior_run`).

    `groups` (`text_groups`): copies of a row's text are left out of its votes and a text votes once.
    `trusted` (class id per row, -1 = none): a checked row's posterior is its trusted label in every E
    step. Its noisy label stays what the model explains (as a neighbour's vote and in the M step): a
    trusted label is the true class, not a draw of the labeller, so the pair (trusted, noisy) is an
    exact observation of T rather than a replacement for the noisy label.
    """
    y = torch.as_tensor(noisy, dtype=torch.long).numpy()
    labelled = y >= 0
    if not labelled.any():
        raise ValueError("no labelled rows: nothing to fit the noise model on")
    votes, query_votes = _labelled_neighbour_votes(embeddings, y, n_classes, k, queries or [], groups)
    probs = torch.as_tensor(init_probs, dtype=torch.float64).numpy().copy()
    pi = (probs[labelled].mean(axis=0) if class_prior is None else np.asarray(class_prior, np.float64)) + 1e-6
    log_pi = np.log(pi / pi.sum())
    start_pi = np.exp(log_pi)
    for _ in range(max(1, max_iterations)):
        t = noise_matrix(probs, y, n_classes, diagonal_pseudocount, floor=1e-2)
        updated = _trusted_one_hot(_noise_model_e_step(log_pi, votes, y, np.log(t)), trusted)
        change = float(np.abs(updated - probs).max())
        probs = updated
        if class_prior_strength is not None:
            counts = probs[labelled].sum(axis=0) + class_prior_strength * labelled.sum() * start_pi
            log_pi = np.log(counts / counts.sum())
        if change < tolerance:
            break
    return NoiseModelPrior(
        train=torch.from_numpy(probs).float(),
        queries=[
            torch.from_numpy(_noise_model_e_step(log_pi, v, None, np.log(t))).float() for v in query_votes
        ],
        noise_matrix=torch.from_numpy(t).float(),
        class_prior=torch.from_numpy(np.exp(log_pi)).float(),
    )


def _labelled_neighbour_votes(embeddings, y: np.ndarray, n_classes: int, k: int, queries: list, groups=None):
    """Unbalanced vote shares of the k nearest labelled distinct texts: for every row (its own text left
    out) and per query set."""
    emb = _normalise(torch.as_tensor(embeddings).float().numpy())
    groups = np.arange(len(emb)) if groups is None else np.asarray(groups)
    rows = np.flatnonzero(y >= 0)
    index = distinct_texts(emb[rows], y[rows], groups[rows], n_classes)
    votes = knn_votes(index.embeddings, index.labels, emb, n_classes, k, own_entry(index, groups), False)
    query_votes = [
        knn_votes(
            index.embeddings, index.labels, torch.as_tensor(q).float().numpy(), n_classes, k, None, False
        )
        if len(q)
        else np.zeros((0, n_classes), dtype=np.float32)
        for q in queries
    ]
    return votes, query_votes


def _noise_model_e_step(log_pi: np.ndarray, v: np.ndarray, own: np.ndarray | None, log_t: np.ndarray):
    """P(y | votes v, own label) under the noise matrix exp(log_t) and the class prior exp(log_pi)."""
    logits = log_pi[None, :] + v.astype(np.float64) @ log_t.T
    if own is not None:
        has = own >= 0
        logits[has] += log_t[:, own[has]].T
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)
