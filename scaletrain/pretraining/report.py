"""A pretraining run's outputs: weights, config, metrics, history, report.html and hf/."""
from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scaletrain.config import Config  # noqa: E402
from scaletrain.evaluate.report import build_page, figure_html, table_html  # noqa: E402
from scaletrain.models.transformer import MaskedLM  # noqa: E402
from scaletrain.pretraining.hf import hf_files  # noqa: E402
from scaletrain.rundir import RunDir  # noqa: E402


def curves(history: list[dict]) -> str:
    """Masked-LM loss (train and validation), perplexity and masked-token accuracy by epoch."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["train_loss"] for r in history], label="train")
    axes[0].plot(epochs, [r.get("val_loss") for r in history], label="validation")
    axes[0].set_ylabel("masked-LM loss"), axes[0].legend()
    axes[1].plot(epochs, [r.get("val_perplexity") for r in history], color="tab:red")
    axes[1].set_ylabel("validation perplexity"), axes[1].set_yscale("log")
    axes[2].plot(epochs, [r.get("val_score") for r in history], color="tab:green")
    axes[2].set_ylabel("validation masked-token accuracy")
    for ax in axes:
        ax.set_xlabel("epoch"), ax.grid(alpha=.3)
    return figure_html("pretraining-curves", "Masked-LM pretraining", fig)


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
