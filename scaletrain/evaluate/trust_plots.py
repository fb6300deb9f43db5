"""The report's calibration and decision sections: a reliability diagram with ECE and Brier
score (before and after temperature scaling), and for binary tasks ROC and precision-recall
curves with the decision threshold marked."""
from __future__ import annotations

import html

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from scaletrain.evaluate.calibration import brier, expected_calibration_error, reliability_bins, uncalibrated
from scaletrain.evaluate.report import figure_html, plt


def reliability_section(truth: np.ndarray, proba: np.ndarray, temperature: float) -> str:
    """Confidence against accuracy per bin, for the calibrated probabilities and (when a
    temperature was applied) the raw ones; ECE and Brier score in the legend and a table."""
    truth = truth.astype(int)
    curves = [("calibrated (T = %.3g)" % temperature if temperature != 1.0 else "model", proba)]
    if temperature != 1.0:
        curves.insert(0, ("before temperature scaling", uncalibrated(proba, temperature)))
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--", label="perfectly calibrated")
    rows = []
    for (name, p), colour in zip(curves, ("tab:orange", "tab:blue")):
        mean, accuracy, count = reliability_bins(p, truth)
        used = count > 0
        ece, score = expected_calibration_error(p, truth), brier(p, truth)
        ax.plot(mean[used], accuracy[used], color=colour, label=f"{name}: ECE {ece:.3f}, Brier {score:.3f}")
        ax.scatter(mean[used], accuracy[used], s=12 + 160 * count[used] / count.max(), color=colour)  # area: rows
        rows.append((name, ece, score))
    ax.set_xlabel("confidence (top probability)"), ax.set_ylabel("accuracy"), ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
    ax.grid(alpha=.3), ax.legend(fontsize=8, loc="upper left")
    table = "<table><tr><th>probabilities</th><th>ECE</th><th>Brier</th></tr>" + "".join(
        f"<tr><td>{html.escape(n)}</td><td>{e:.4f}</td><td>{b:.4f}</td></tr>" for n, e, b in rows) + "</table>"
    return ("<h2 id='calibration'>Calibration (test)</h2>" + figure_html("reliability", "Reliability diagram (test rows)", fig)
            + table)


def binary_curves_section(truth: np.ndarray, positive: np.ndarray, threshold: float, positive_name: str) -> str:
    """ROC and precision-recall curves of the positive class, the decision threshold marked on each."""
    truth = truth.astype(int)
    if len(np.unique(truth)) < 2:
        return ""
    fpr, tpr, roc_thresholds = roc_curve(truth, positive)
    precision, recall, pr_thresholds = precision_recall_curve(truth, positive)
    decided = positive >= threshold
    at_tpr, at_fpr = decided[truth == 1].mean(), decided[truth == 0].mean()
    at_precision = truth[decided].mean() if decided.any() else 1.0
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.plot(fpr, tpr, color="tab:blue", label=f"ROC (AUC {roc_auc_score(truth, positive):.3f})")
    left.plot([0, 1], [0, 1], color="gray", lw=1, ls="--")
    left.scatter([at_fpr], [at_tpr], color="tab:red", zorder=3, label=f"threshold {threshold:.3f}")
    left.set_xlabel("false positive rate"), left.set_ylabel("true positive rate"), left.legend(fontsize=8), left.grid(alpha=.3)
    right.plot(recall, precision, color="tab:blue", label="precision-recall")
    right.axhline(truth.mean(), color="gray", lw=1, ls="--", label=f"base rate {truth.mean():.3f}")
    right.scatter([at_tpr], [at_precision], color="tab:red", zorder=3, label=f"threshold {threshold:.3f}")
    right.set_xlabel("recall"), right.set_ylabel("precision"), right.legend(fontsize=8), right.grid(alpha=.3)
    title = f"ROC and precision-recall for '{positive_name}' (test), the decision threshold marked"
    return "<h2 id='decision'>Decision (test)</h2>" + figure_html("roc-pr", title, fig)
