"""`scaletrain compress`: a run made smaller — distilled, pruned, quantized to int8 — each
result a run directory, measured side by side with the original (compress.json)."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

from scaletrain.compress.distill import parameters, student_config, train_student
from scaletrain.compress.measure import Variant, measure, raw_rows, recommend
from scaletrain.compress.prune import pruned
from scaletrain.compress.quantize import quantize_int8
from scaletrain.errors import ExportError
from scaletrain.evaluate.metrics import main_score_name
from scaletrain.export import export_onnx, onnx_inputs
from scaletrain.fitting.pipeline import load_and_prepare
from scaletrain.io import write_json
from scaletrain.run import Run
from scaletrain.runlock import run_lock
from scaletrain.train.budget import Budget

FINE_TUNE_SHARE = 0.25   # the fine-tune after pruning: this share of the run's epochs (at least 3)
FINE_TUNE_LR = 0.3       # at this share of its learning rate: the pruned weights are a good start


def compress_run(run_dir: str | Path, data, out: str | Path, *, distill: float | None = None,
                 prune: float | None = None, quantize: str | None = None, test=None, tolerance: float = 0.01,
                 verbose: bool = False) -> dict:
    """Write OUT/distilled, OUT/pruned, OUT/int8 (those asked for) and OUT/compress.json; return
    the summary. `data` is what RUN was trained on: its split is recovered from the run's seed,
    the variants train on its training rows and are scored on its test rows (or `test`). OUT
    is locked for the command: one writer at a time."""
    if distill is None and prune is None and quantize is None:
        raise ExportError("nothing to do: give --distill SHARE, --prune FRACTION and/or --quantize int8")
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize {quantize}: only int8 is supported")
    with run_lock(out):
        return _compress(run_dir, data, Path(out), distill, prune, quantize, test, tolerance, verbose)


def _compress(run_dir, data, out: Path, distill, prune, quantize, test, tolerance: float, verbose: bool) -> dict:
    teacher = Run.load(run_dir)
    limit = teacher.config.train.time_limit  # a student's budget (a share of it for pruning's fine-tune)
    _, prepared = load_and_prepare(teacher.config.thawed(), data, None, test)
    if prepared.preprocess["target"].get("classes") != teacher.classes:
        raise ExportError(f"'{data}' does not hold the classes RUN was trained on ({teacher.classes[:5]}); give the "
                          "data it was trained on")
    test_source = prepared.test_source or prepared.val_source
    out.mkdir(parents=True, exist_ok=True)
    variants = [Variant("original", teacher, export_onnx(run_dir, out / "original.onnx"), "as trained")]
    if distill is not None:
        # the run's time limit bounds the student as it bounded the original (whose epoch count
        # is then a ceiling, 1,000 under zero-config)
        student = train_student(teacher, student_config(teacher, distill), prepared, Budget(limit), verbose=verbose)
        variants.append(_saved(student, out / "distilled", test_source, prepared,
                               f"distilled into {parameters(student.model):,} parameters "
                               f"({parameters(student.model) / parameters(teacher.model):.1%} of the original)"))
    if prune is not None:
        model, cfg = pruned(teacher.model, teacher.config, teacher.spec, prune)
        trained_epochs = teacher.metrics.get("epochs") or teacher.config.train.epochs  # as run, not the ceiling
        cfg.train.epochs = max(3, round(trained_epochs * FINE_TUNE_SHARE))
        cfg.train.lr = teacher.config.train.lr * FINE_TUNE_LR
        tuned = train_student(teacher, cfg, prepared, Budget(limit and limit * FINE_TUNE_SHARE), model=model,
                              spec=teacher.spec, verbose=verbose)
        variants.append(_saved(tuned, out / "pruned", test_source, prepared,
                               f"{prune:.0%} of neurons/channels removed, then {cfg.train.epochs} epochs of fine-tuning"))
    if quantize:
        variants.append(_int8(teacher, Path(run_dir), out / "int8", variants[0].onnx, prepared))
    measure(variants, test_source)
    score = main_score_name(teacher.task)
    summary = {"run": str(run_dir), "score": score, "tolerance": tolerance,
               "variants": {v.name: v.figures for v in variants},
               "recommended": recommend(variants, score, tolerance),
               "timing": "onnxruntime on this machine, one process; rows of the test split; ratios to the original"}
    write_json(out / "compress.json", summary)
    return summary


@contextmanager
def staged(where: Path):
    """A variant written into a hidden folder beside `where`, renamed to it only when whole: a
    failure (a quantizer error, a full disk) leaves no half-written variant."""
    partial = where.with_name(f".{where.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(where, ignore_errors=True)
    partial.rename(where)


def _saved(run: Run, where: Path, test_source, prepared, how: str) -> Variant:
    """The trained variant scored, written as a run directory, and exported."""
    run.metrics = {"task": prepared.task, "score": main_score_name(prepared.task), "test": run.evaluate(test_source),
                   "val": run.evaluate(prepared.val_source) if len(prepared.val_y) else {},
                   "parameters": parameters(run.model), "model": run.config.model.name, "compressed": how,
                   "data": prepared.summary, "notes": [how]}
    with staged(where) as partial:
        run.save(partial)
        export_onnx(partial)
    run.path = where
    return Variant(where.name, run, where / "model.onnx", how)


def _int8(teacher: Run, run_dir: Path, where: Path, fp32: Path, prepared) -> Variant:
    """The original run copied, with model.onnx its int8 form (for onnxruntime: predict and
    serve keep the float weights)."""
    with staged(where) as partial:
        shutil.copytree(run_dir, partial, ignore=shutil.ignore_patterns("checkpoints", "*.onnx", "*.card.json", ".lock"),
                        dirs_exist_ok=True)
        calibration = onnx_inputs(teacher, raw_rows(prepared.val_source))
        how = quantize_int8(fp32, partial / "model.onnx", calibration)
        shutil.copy(fp32.with_suffix(".card.json"), partial / "model.card.json")
    return Variant("int8", teacher, where / "model.onnx", f"int8 {how}")


__all__ = ["compress_run"]
