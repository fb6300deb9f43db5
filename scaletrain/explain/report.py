"""The report's trust sections, for every run: calibration and the decision (evaluate's plots),
global importance of the columns, and the most confident mistakes — images with their heatmaps,
texts with their words highlighted."""
from __future__ import annotations

import html

import numpy as np

from scaletrain.evaluate.trust_plots import binary_curves_section, reliability_section
from scaletrain.explain import explainer_for
from scaletrain.run import Assessment, Run
from scaletrain.tasks import task_of

MISTAKES = 12  # the most confident mistakes shown


def trust_sections(run: Run, assessment: Assessment | None) -> list[str]:
    """The sections; an explanation that fails is said in its place (the run is already written)."""
    if assessment is None or not len(assessment.truth):
        return []
    sections = []
    if assessment.proba is not None:
        target = run.preprocess["target"]
        sections.append(reliability_section(assessment.truth, assessment.proba, target.get("temperature") or 1.0))
        if task_of(run.task).thresholded:
            sections.append(binary_curves_section(assessment.truth, assessment.proba[:, 1],
                                                  target.get("threshold", 0.5), str(run.classes[1])))
    if assessment.source is None or assessment.source.streamed:
        return sections
    for what, make in (("importance", _importance), ("mistakes", _mistakes)):
        try:
            sections.append(make(run, assessment))
        except Exception as exc:  # noqa: BLE001 - a report section must not undo a finished fit
            sections.append(f"<h2>{what}</h2><p class='note'>not computed: {html.escape(str(exc))}</p>")
    return sections


def _importance(run: Run, a: Assessment) -> str:
    return explainer_for(run).importance_section(run, a)


def _confident_mistakes(a: Assessment) -> np.ndarray:
    """Positions (in the assessment) of wrong predictions, the most confident first."""
    if a.proba is None:
        return np.zeros(0, dtype=int)
    wrong = np.flatnonzero(a.predicted != a.truth)
    return wrong[np.argsort(-a.proba[wrong, a.predicted[wrong]])][:MISTAKES]


def _mistakes(run: Run, a: Assessment) -> str:
    chosen = _confident_mistakes(a)
    if not len(chosen):
        return ""
    classes = [str(c) for c in run.classes]
    captions = [f"{classes[a.truth[i]]} → {classes[a.predicted[i]]} ({a.proba[i, a.predicted[i]]:.2f})" for i in chosen]
    return explainer_for(run).mistakes_section(run, a, chosen, captions)
