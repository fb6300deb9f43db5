"""The verbs that read a run: predict, evaluate, info."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from scaletrain.cli.options import DEBUG, app, err_console, guarded, metrics_table, out_console, reads_run


@app.command()
@guarded
@reads_run
def predict(
    run: Path = typer.Argument(..., help="Run directory."),
    data: str = typer.Argument(..., help="Raw rows or images, as for train."),
    output: Optional[Path] = typer.Option(None, help="Write predictions here (.csv, .parquet, .jsonl); default stdout."),
    strict: bool = typer.Option(False, help="Refuse input that does not fit the trained schema (words in number "
                                            "columns, unseen categories, far-off values, missing columns)."),
    explain: int = typer.Option(0, "--explain", help="Add the K strongest reasons per row (reason_i, reason_i_attribution: "
                                                    "columns by SHAP values against training rows, words of free text; table runs)."),
    k: Optional[int] = typer.Option(None, "--k", help="Recommender runs: items per user (default 10); DATA is a "
                                                      "table of users (its user column) or one user id."),
    debug: bool = DEBUG,
):
    """Predict raw DATA with a trained RUN: the rows plus prediction and proba_<class> columns (a recommender
    run: each user's top-k unseen items)."""
    from scaletrain.api import load
    from scaletrain.modalities.table.tables import write_table
    from scaletrain.tasks import task_of

    trained = load(run)
    if task_of(trained.task).regime is not None:  # a recommender: lists per user, its own reasons
        frame = trained.predict(data, k=10 if k is None else k, strict=strict, reasons=explain)
    elif k is not None:
        raise typer.BadParameter("--k is for recommender runs (train --task recommend)")
    else:
        frame = trained.predict(data, strict=strict)
    warnings = frame.attrs.get("warnings", [])
    if explain > 0 and task_of(trained.task).regime is None:
        from scaletrain.explain import predict_reasons

        frame = frame.join(predict_reasons(trained, data, explain).set_axis(frame.index))
    for line in warnings:
        err_console.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    if output is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        write_table(frame, output)
        err_console.print(f"wrote {len(frame)} predictions to {output}")


@app.command()
@guarded
@reads_run
def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    data: str = typer.Argument(..., help="Labelled raw data, as for train."),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON."),
    debug: bool = DEBUG,
):
    """Evaluate a trained RUN on labelled DATA."""
    from scaletrain.api import load

    metrics = load(run).evaluate(data)
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        out_console.print(metrics_table({"test": metrics}, f"evaluation of {run} on {data}"))


@app.command()
@guarded
@reads_run
def info(run: Path = typer.Argument(..., help="Run directory."), debug: bool = DEBUG):
    """Show what a run was trained on, how, and with which results."""
    from scaletrain.api import load
    from scaletrain.rundir import RunDir
    from scaletrain.tasks import task_of

    if RunDir(run).is_pretrained():
        return _pretraining_info(run)
    loaded = load(run)
    if task_of(loaded.task).regime is not None:
        return _recommender_info(run, loaded.metrics)
    m, c = loaded.metrics, loaded.config
    table = Table(title=f"run {run}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    data = m.get("data", {})
    rows = {
        "task": loaded.task, "data": ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (list, dict))),
        "target": loaded.preprocess.get("target_column") or "class subfolders",
        "classes": ", ".join(map(str, loaded.classes or [])) or "—",
        "model": f"{c.model.name}" + (" of " + ", ".join(f"{member.name} {w:.2f}" for member, w in
                                                       zip(c.model.members, c.model.weights)) if c.model.members else "")
                 + f" ({m.get('parameters', 0):,} parameters)",
        "training": f"{c.train.optimizer} lr={c.train.lr} batch={c.train.batch_size} schedule={c.train.schedule} "
                    f"epochs={m.get('epochs')}/{c.train.epochs} in {m.get('train_seconds', 0):.1f}s",
    }
    if p := m.get("privacy"):
        rows["privacy"] = (f"DP-SGD ε={p['epsilon']:.3g} (target {p['target_epsilon']:g}), δ={p['delta']:.2g}, "
                           f"{p['steps']} steps, noise {p['noise_multiplier']:.3g}, clip {p['max_grad_norm']:g}")
    for key, value in rows.items():
        table.add_row(key, str(value))
    out_console.print(table)
    if m.get("test") or m.get("val"):
        out_console.print(metrics_table(m, "metrics"))


def _pretraining_info(run: Path) -> None:
    from scaletrain.rundir import RunDir

    d = RunDir(run)
    m, encoder = d.read_metrics(), d.read_spec()["encoder"]
    v = m.get("validation", {})
    table = Table(title=f"pretraining run {run}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = {"task": "masked language modelling", "corpus": f"{m.get('documents', 0):,} documents",
            "encoder": ", ".join(f"{k}={encoder[k]}" for k in ("layers", "width", "heads", "ff", "vocab_size",
                                                              "max_positions")),
            "training": f"{m.get('steps', 0):,} steps, {m.get('epochs', 0)} epochs, {m.get('tokens_per_second', 0):,.0f} "
                        f"tokens/s, {m.get('seconds', 0):.0f}s",
            "validation": f"masked-LM loss {v.get('val_loss', float('nan')):.4f}, perplexity "
                          f"{v.get('val_perplexity', float('nan')):.2f}, masked-token accuracy {v.get('val_score', float('nan')):.4f}",
            "use": f"--set model.init_from={run}" + (f"; Hugging Face: {run / 'hf'}" if m.get("hf") else "")}
    for key, value in rows.items():
        table.add_row(key, str(value))
    out_console.print(table)


def _recommender_info(run: Path, m: dict) -> None:
    data = m.get("data", {})
    table = Table(title=f"recommender run {run}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = {"task": "recommend", "interactions": f"{data.get('interactions', 0):,} ({data.get('users', 0):,} users × "
                                                 f"{data.get('items', 0):,} items)",
            "roles": ", ".join(f"{r}={c}" for r, c in (data.get("roles") or {}).items() if c),
            "split": data.get("split", "—"), "model": m.get("model", "—"),
            "baselines (test)": ", ".join(f"{n} {f.get(m.get('headline', 'ndcg@10'), 0):.4f}"
                                          for n, f in m.get("baselines", {}).items())}
    for key, value in rows.items():
        table.add_row(key, str(value))
    out_console.print(table)
    out_console.print(metrics_table(m, "metrics"))
