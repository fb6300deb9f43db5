"""Test-time shifts (`model.test_shifts=auto`): kept for a conv net where they get more of the
validation rows right than the plain prediction does."""
from __future__ import annotations

from scaletrain.data.prepared import Prepared
from scaletrain.evaluate.metrics import score_outputs
from scaletrain.run import Run


def choose_test_shifts(run: Run, prepared: Prepared) -> dict | None:
    """Score the validation rows with the model's shifted views off and on, keep the better
    (ties: off, the cheaper to serve), set the model so and say what was measured; None where
    the model has no views or they are already set (`on`/`off`)."""
    model = run.model
    if getattr(model, "shifted_views", False) is not None or not len(prepared.val_y):
        return None
    scores = {}
    for views in (False, True):
        model.shifted_views = views
        scores[views] = score_outputs(run.task, run.outputs(prepared.val_inputs), prepared.val_y, prepared.target)
    kept = scores[True] > scores[False]
    model.shifted_views = kept
    prepared.note(f"test-time shifts (the image and it one pixel left and right, averaged): validation "
                  f"{scores[False]:.4f} -> {scores[True]:.4f}, {'kept' if kept else 'not kept'}"
                  f"{f' ({model.VIEWS}x the inference)' if kept else ''}")
    return {"kept": kept, "val_plain": scores[False], "val_shifted": scores[True], "views": model.VIEWS}


def settled(setting: str) -> str:
    """The setting a run is saved with where nothing was decided (no validation rows, a refit
    model): undecided views are off, as the model read them."""
    return "off" if setting == "auto" else setting
