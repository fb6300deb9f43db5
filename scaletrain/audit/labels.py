"""Likely label errors: confident learning (Northcutt et al. 2021) through cleanlab, on
probabilities no model saw the row's label for (out-of-fold, or a held-out split's)."""
from __future__ import annotations

import numpy as np

TOP_SHARE = 0.05  # the suspects listed: the most suspicious 5% of the rows (at least 10)


def label_suspects(labels: np.ndarray, proba: np.ndarray, ids: np.ndarray, classes: list) -> list[dict]:
    """Rows whose given label the probabilities doubt most, ranked by the label's own probability."""
    from cleanlab.filter import find_label_issues

    labels = np.asarray(labels, dtype=int)
    if len(np.unique(labels)) < 2 or len(labels) < 20:
        return []
    # n_jobs=1: its process pool (fork) hangs inside a Ray worker, and one process is fast enough here
    issues = find_label_issues(labels, proba, return_indices_ranked_by="self_confidence", n_jobs=1)
    ranked = np.argsort(proba[np.arange(len(labels)), labels], kind="stable")  # all rows, most doubted first
    top = ranked[:max(10, int(TOP_SHARE * len(labels)))]
    suspects = [{"row": int(ids[i]), "label": str(classes[labels[i]]), "likely": str(classes[int(proba[i].argmax())]),
                 "label_probability": round(float(proba[i, labels[i]]), 4)} for i in top]
    return [{"check": "likely label errors", "severity": "medium" if len(issues) else "info", "count": int(len(issues)),
             "rows": [int(ids[i]) for i in issues][:1000], "suspects": suspects,
             "what": f"{len(issues)} rows whose label the out-of-sample probabilities contradict (confident learning); "
                     f"the {len(top)} most doubted are listed",
             "do": "look at the listed rows first; relabel or drop the wrong ones"}]
