"""What a fit decides on its validation rows once the model is trained: a temperature that
calibrates its probabilities, then the decision (a binary threshold or multiclass class-prior
shifts) tuned on them; both are stored in the run's target state, which predict applies."""
from __future__ import annotations

from scaletrain.data.prepared import Prepared
from scaletrain.evaluate.threshold import tune_class_bias, tune_threshold
from scaletrain.run import Run
from scaletrain.tasks import task_of

MIN_CALIBRATION_ROWS = 30  # validation rows below which one fitted number is noise


def calibrate(run: Run, prepared: Prepared) -> dict | None:
    """Fit a temperature on the validation rows (classification); keep it where it lowers
    their NLL (`train.calibration=temperature`: always; `none`: never) and store it with the
    run's target state; return what was measured."""
    from scaletrain.evaluate.calibration import fit_temperature, nll

    mode, loss = run.config.train.calibration, run.config.train.loss
    if mode == "none" or not task_of(run.task).classifies or len(prepared.val_y) < MIN_CALIBRATION_ROWS:
        return None
    outputs, y = run.outputs(prepared.val_inputs), prepared.val_y.numpy()
    fitted = fit_temperature(outputs, y, loss)
    before, after = nll(outputs, y, loss), nll(outputs, y, loss, fitted)
    kept = mode == "temperature" or after < before - 1e-6
    if kept:
        run.preprocess = {**run.preprocess, "target": run.preprocess["target"] | {"temperature": fitted}}
    prepared.note(f"temperature scaling: T={fitted:.3f} fitted on validation rows (NLL {before:.4f} -> "
                  f"{after:.4f}), {'applied' if kept else 'not applied: it did not lower their NLL'}")
    return {"temperature": fitted if kept else 1.0, "fitted": fitted, "kept": kept, "val_nll_before": before,
            "val_nll_after": after}


def calibration_on_test(run: Run) -> dict:
    """Test ECE and Brier score with the temperature and without it (the report's figures)."""
    from scaletrain.evaluate.calibration import brier, expected_calibration_error, uncalibrated

    a = run.assessment
    if a is None or a.proba is None:
        return {}
    raw = uncalibrated(a.proba, run.preprocess["target"].get("temperature") or 1.0)
    truth = a.truth.astype(int)
    return {"test_ece_before": expected_calibration_error(raw, truth), "test_ece_after": expected_calibration_error(a.proba, truth),
            "test_brier_before": brier(raw, truth), "test_brier_after": brier(a.proba, truth)}


def set_threshold(run: Run, prepared: Prepared) -> dict | None:
    """Tune the decision on the validation rows for `train.threshold_metric` — the binary
    threshold, or multiclass class-prior shifts — and store it with the run's target state
    (predict applies it); return what was measured."""
    metric = run.config.train.threshold_metric
    if metric == "none" or not task_of(run.task).classifies or not len(prepared.val_y):
        return None
    _, proba = run.predict_encoded(prepared.val_inputs)
    truth = prepared.val_y.numpy()
    if task_of(run.task).thresholded:
        decision = tune_threshold(truth, proba[:, 1], metric)
        what, before = f"decision threshold {decision['threshold']:.3f}", decision["score_at_half"]
    else:
        decision = tune_class_bias(truth, proba, metric)
        what, before = "class-prior shifts " + ", ".join(f"{b:+.1f}" for b in decision["class_bias"]), \
            decision["score_at_argmax"]
    run.preprocess = {**run.preprocess, "target": decision_target(run, decision)}
    prepared.note(f"{what} tuned on validation rows for {metric} ({before:.4f} before, {decision['score']:.4f} "
                  "after; validation metrics are measured with it, so they are optimistic)")
    return decision


DECISION_KEYS = ("threshold", "class_bias")


def decision_target(run: Run, decision: dict | None) -> dict:
    """The run's target state with the tuned decision (none: the plain argmax)."""
    target = {k: v for k, v in run.preprocess["target"].items() if k not in DECISION_KEYS}
    return target | {k: decision[k] for k in DECISION_KEYS if decision and k in decision}
