"""Face verification and identification metrics on embeddings (the face task's evaluation).

- **Pairs** (:func:`make_pairs`): every positive pair (two photographs of one person) of the identities
  given, and as many negative pairs drawn without replacement from the different-person pairs (seeded),
  dealt into 10 folds balanced in positives and negatives. LFW's own ``pairs.txt`` (Huang et al. 2007,
  View 2) has 10 folds of 300 + 300 pairs; with a few identities every positive pair is used instead.
  Unlike LFW's folds, ours share identities (10 test people cannot fill 10 identity-disjoint folds).
- **The LFW protocol** (:func:`lfw_accuracy`, as insightface's ``verification.py`` / facenet's
  ``calculate_roc``): for each fold, the cosine threshold that maximizes accuracy on the other 9 folds
  (searched exactly, over every midpoint of their scores) is applied to it; accuracy is the mean over
  the 10 folds ± their standard deviation (``np.std``, ddof = 0, as those scripts).
- **ROC AUC** and **TAR at FAR = 1 %** over all pairs through scikit-learn's ``roc_auc_score`` /
  ``roc_curve`` (TAR: the largest true-accept rate whose false-accept rate is at most 1 %).
- **Closed-set identification, 1-shot** (:func:`identification_top1`): each person's first photograph
  is the gallery, the others are probes; top-1 = the nearest gallery face (cosine) is the same person.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FOLDS = 10
FAR = 0.01


def make_pairs(identity: np.ndarray, seed: int = 0, folds: int = FOLDS) -> dict[str, np.ndarray]:
    """``{"i", "j", "same", "fold"}``: every positive pair of ``identity`` (indices into it) and as many
    seeded negatives, in ``folds`` balanced folds."""
    identity = np.asarray(identity)
    i, j = np.triu_indices(len(identity), k=1)
    same = identity[i] == identity[j]
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(same)
    neg_all = np.flatnonzero(~same)
    neg = np.sort(rng.choice(neg_all, size=min(len(pos), len(neg_all)), replace=False))
    fold = np.empty(len(pos) + len(neg), dtype=np.int64)
    fold[: len(pos)] = rng.permutation(len(pos)) % folds
    fold[len(pos) :] = rng.permutation(len(neg)) % folds
    keep = np.concatenate([pos, neg])
    return {"i": i[keep], "j": j[keep], "same": same[keep], "fold": fold}


def pair_scores(embedding: np.ndarray, pairs: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity of each pair of L2-normalized embeddings (N, D)."""
    return np.einsum("nd,nd->n", embedding[pairs["i"]], embedding[pairs["j"]])


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(threshold, accuracy)``: the cosine threshold (``score >= t`` -> same) maximizing accuracy on
    these pairs, searched over every midpoint between sorted scores (and below/above all of them)."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], same[order].astype(np.int64)
    # threshold before position k: pairs k.. are called same; correct = negatives below + positives above
    neg_below = np.concatenate([[0], np.cumsum(1 - y)])
    pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
    correct = neg_below + pos_above
    k = int(np.argmax(correct))
    if k == 0:
        t = float(s[0]) - 1e-6
    elif k == len(s):
        t = float(s[-1]) + 1e-6
    else:
        t = float((s[k - 1] + s[k]) / 2)
    return t, float(correct[k] / len(s))


def lfw_accuracy(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> tuple[float, float, list[float]]:
    """``(mean accuracy, sd, thresholds)`` over the folds, each fold's threshold chosen on the others."""
    accs, thresholds = [], []
    for k in np.unique(fold):
        t, _ = best_threshold(scores[fold != k], same[fold != k])
        test = fold == k
        accs.append(float(np.mean((scores[test] >= t) == same[test])))
        thresholds.append(t)
    return float(np.mean(accs)), float(np.std(accs)), thresholds


def identification_top1(embedding: np.ndarray, identity: np.ndarray) -> float:
    """Closed-set 1-shot identification: first photograph of each person = gallery, the rest = probes."""
    identity = np.asarray(identity)
    people, first = np.unique(identity, return_index=True)
    probes = np.setdiff1d(np.arange(len(identity)), first)
    if len(probes) == 0:
        return float("nan")
    sims = embedding[probes] @ embedding[first].T
    return float(np.mean(people[np.argmax(sims, axis=1)] == identity[probes]))


def verification(embedding: np.ndarray, identity: np.ndarray, pairs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every metric of one split: ``accuracy`` ± ``accuracy_sd`` (LFW protocol), ``auc``, ``tar_far1``
    (TAR at FAR = 1 %), ``top1`` (identification), ``threshold`` (best on all these pairs) and the ROC."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = pair_scores(embedding, pairs)
    same = pairs["same"]
    acc, sd, _ = lfw_accuracy(scores, same, pairs["fold"])
    fpr, tpr, _ = roc_curve(same, scores)
    threshold, _ = best_threshold(scores, same)
    return {
        "accuracy": acc,
        "accuracy_sd": sd,
        "auc": float(roc_auc_score(same, scores)),
        "tar_far1": float(tpr[fpr <= FAR].max()),
        "top1": identification_top1(embedding, identity),
        "threshold": threshold,
        "pairs": len(same),
        "positives": int(same.sum()),
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "scores": scores.tolist(),
    }
