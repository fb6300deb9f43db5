"""The report's trust sections, for every run: calibration and the decision (evaluate's plots),
global importance of the columns, and the most confident mistakes — images with their heatmaps,
texts with their words highlighted."""
from __future__ import annotations

import html

import numpy as np

from scaletrain.evaluate.report import figure_html
from scaletrain.evaluate.trust_plots import binary_curves_section, reliability_section
from scaletrain.explain.pages import bars
from scaletrain.run import Assessment, Run

IMPORTANCE_ROWS = 300   # test rows attributed for the report's global view
IMPORTANCE_STEPS = 32   # a mean over rows needs no per-row completeness: ~0.1 s, not 1 s
TEXT_ROWS = 60          # test rows whose words are taken out one at a time
MISTAKES = 12           # the most confident mistakes shown


def trust_sections(run: Run, assessment: Assessment | None) -> list[str]:
    """The sections; an explanation that fails is said in its place (the run is already written)."""
    if assessment is None or not len(assessment.truth):
        return []
    sections = []
    if assessment.proba is not None:
        target = run.preprocess["target"]
        sections.append(reliability_section(assessment.truth, assessment.proba, target.get("temperature") or 1.0))
        if run.task == "binary":
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
    if run.modality.name != "table":
        return ""
    from scaletrain.explain.attributions import table_attributions
    from scaletrain.explain.text import has_text, top_words, word_attributions

    frame = a.source.frame.iloc[a.rows[:IMPORTANCE_ROWS]].reset_index(drop=True)
    found = table_attributions(run, frame, IMPORTANCE_STEPS).frame
    out = ""
    if found.shape[1]:
        importance = found.abs().mean().sort_values(ascending=False)
        out += bars({k: float(v) for k, v in importance.items()},
                    f"Global importance: mean |attribution| per column over {len(frame)} test rows (Integrated Gradients)")
    if has_text(run):
        words = word_attributions(run, frame, TEXT_ROWS)
        out += bars(top_words(words), f"Words with the largest mean attribution over {len(words)} test rows "
                                      "(each taken out: the drop)")
    return "<div id='importance'>" + out + "</div>" if out else ""


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
    if run.modality.name == "image":
        from scaletrain.data.preprocess import transform_images
        from scaletrain.explain.images import image_heatmaps, overlay_figure

        images = a.source.images.images[a.rows[chosen]]
        maps = image_heatmaps(run, transform_images(images)).ig
        return ("<h2>The most confident mistakes (test)</h2>" + figure_html(
            "mistakes", "true → predicted (probability); Integrated Gradients for the predicted class over each "
                        "(red: towards it, blue: against)", overlay_figure(images, list(maps), captions)))
    from scaletrain.explain.text import has_text, highlighted, word_attributions

    if not has_text(run):
        return ""
    frame = a.source.frame.iloc[a.rows[chosen]].reset_index(drop=True)
    words = word_attributions(run, frame)
    return ("<h2>The most confident mistakes (test): the words behind each</h2><div id='mistakes'>"
            "<p class='note'>red: towards the predicted class, blue: against</p>" + "".join(
                f"<p class='text'><b>{html.escape(c)}</b> — {highlighted(w, 600)}</p>" for c, w in zip(captions, words))
            + "</div>")
