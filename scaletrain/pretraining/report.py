"""A pretraining run's outputs: weights, config, metrics, history, report.html and hf/."""
from __future__ import annotations

import html

from scaletrain.config import Config
from scaletrain.evaluate.charts import COLOURS, Panel, Series, chart, figure_svg
from scaletrain.evaluate.report import build_page, table_html
from scaletrain.models.transformer import MaskedLM
from scaletrain.pretraining.hf import hf_files
from scaletrain.rundir import RunDir


def curves(history: list[dict]) -> str:
    """Masked-LM loss (train and validation), perplexity and masked-token accuracy by epoch."""
    epochs = [row["epoch"] for row in history]
    column = lambda name: [row.get(name, float("nan")) for row in history]  # noqa: E731
    panels = [Panel([Series(epochs, column("train_loss"), "train"),
                     Series(epochs, column("val_loss"), "validation", COLOURS["orange"])], "epoch", "masked-LM loss"),
              Panel([Series(epochs, column("val_perplexity"), colour=COLOURS["red"])], "epoch", "validation perplexity",
                    y_log=True),
              Panel([Series(epochs, column("val_score"), colour=COLOURS["green"])], "epoch",
                    "validation masked-token accuracy")]
    return figure_svg("pretraining-curves", "Masked-LM pretraining", chart(panels, "Masked-LM pretraining"))


def write_outputs(run: RunDir, cfg: Config, model: MaskedLM, metrics: dict, history: list[dict]) -> None:
    model = model.to("cpu")
    run.write_pretrained(cfg.to_dict(), model.state_dict(), model.encoder.shape.to_dict())
    if not model.encoder.shape.pre_norm:
        run.write_hf(*hf_files(model))
        metrics["hf"] = "hf/"
    else:
        metrics["notes"].append("no hf/ folder: Hugging Face's BERT is post-norm, this encoder pre-norm")
    run.write_results(metrics, history)
    v = metrics["validation"]
    summary = [{"what": k, "value": v} for k, v in metrics.items() if k not in ("notes", "validation")]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in metrics["notes"])
    body = ("<h2>Corpus and model</h2>" + table_html(summary) + (f"<ul class='note'>{notes}</ul>" if notes else "")
            + "<h2>Validation (held-out blocks, fixed masks)</h2>" + table_html([{
                "masked-LM loss": v["val_loss"], "perplexity": v["val_perplexity"],
                "masked-token accuracy": v["val_score"]}])
            + (curves(history) if history else ""))
    run.write_report(build_page("scaletrain pretraining", body))
