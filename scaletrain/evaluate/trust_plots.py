"""The report's calibration and decision sections: a reliability diagram with ECE and Brier
score (before and after temperature scaling), and for binary tasks ROC and precision-recall
curves with the decision threshold marked."""
from __future__ import annotations

import html

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from scaletrain.evaluate.calibration import brier, expected_calibration_error, reliability_bins, uncalibrated
from scaletrain.evaluate.charts import COLOURS, Panel, Series, chart, figure_svg


def reliability_section(truth: np.ndarray, proba: np.ndarray, temperature: float) -> str:
    """Confidence against accuracy per bin, for the calibrated probabilities and (when a
    temperature was applied) the raw ones; ECE and Brier score in the legend and a table."""
    truth = truth.astype(int)
    curves = [("calibrated (T = %.3g)" % temperature if temperature != 1.0 else "model", proba)]
    if temperature != 1.0:
        curves.insert(0, ("before temperature scaling", uncalibrated(proba, temperature)))
    series = [Series([0, 1], [0, 1], "perfectly calibrated", COLOURS["gray"], dashed=True)]
    rows = []
    for (name, p), colour in zip(curves, (COLOURS["orange"], COLOURS["blue"])):
        mean, accuracy, count = reliability_bins(p, truth)
        used = count > 0
        ece, score = expected_calibration_error(p, truth), brier(p, truth)
        series.append(Series(mean[used], accuracy[used], f"{name}: ECE {ece:.3f}, Brier {score:.3f}", colour))
        series.append(Series(mean[used], accuracy[used], colour=colour, kind="points",  # area: the bin's rows
                             sizes=12 + 160 * count[used] / count.max()))
        rows.append((name, ece, score))
    svg = chart([Panel(series, "confidence (top probability)", "accuracy", x_range=(0, 1), y_range=(0, 1.02))],
                "Reliability diagram (test rows)")
    table = "<table><tr><th>probabilities</th><th>ECE</th><th>Brier</th></tr>" + "".join(
        f"<tr><td>{html.escape(n)}</td><td>{e:.4f}</td><td>{b:.4f}</td></tr>" for n, e, b in rows) + "</table>"
    return ("<h2 id='calibration'>Calibration (test)</h2>" + figure_svg("reliability", "Reliability diagram (test rows)", svg)
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
    marked = f"threshold {threshold:.3f}"
    roc = Panel([Series(fpr, tpr, f"ROC (AUC {roc_auc_score(truth, positive):.3f})"),
                 Series([0, 1], [0, 1], colour=COLOURS["gray"], dashed=True),
                 Series([at_fpr], [at_tpr], marked, COLOURS["red"], kind="points", sizes=36)],
                "false positive rate", "true positive rate", x_range=(0, 1), y_range=(0, 1.02))
    pr = Panel([Series(recall, precision, "precision-recall"),
                Series(y=[truth.mean()], label=f"base rate {truth.mean():.3f}", colour=COLOURS["gray"], kind="hline", dashed=True),
                Series([at_tpr], [at_precision], marked, COLOURS["red"], kind="points", sizes=36)],
               "recall", "precision", x_range=(0, 1), y_range=(0, 1.02))
    title = f"ROC and precision-recall for '{positive_name}' (test), the decision threshold marked"
    return "<h2 id='decision'>Decision (test)</h2>" + figure_svg("roc-pr", title, chart([roc, pr], title))
