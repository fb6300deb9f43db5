"""`train --backend ray` and `pretrain --backend ray`: the same training through Ray Train's
TorchTrainer, on a Ray cluster that is already running (`ray start --head`, or RAY_ADDRESS).

Ray starts the workers and joins them in a torch.distributed process group; each worker then
runs the ordinary `fit` (or `pretrain`), which finds that group and trains data-parallel exactly as under
torchrun (rank 0 writes the run directory). After every epoch each worker reports its metrics
to Ray, rank 0 with its newest checkpoint, so Ray holds the run's checkpoints too. Ray's own
bookkeeping (which it pickles) goes to a temporary folder, removed afterwards.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from scaletrain.config import build_config
from scaletrain.errors import ScaletrainError
from scaletrain.fitting.pipeline import FitOptions, fit_run
from scaletrain.parallel import distributed
from scaletrain.parallel.cluster import connect
from scaletrain.pretraining.run import pretrain
from scaletrain.train.loop import Callback


def fit_on_ray(job: dict, workers: int) -> dict:
    """Run the fit `job` describes (data, test, out, config as a dict, resume) on `workers` Ray
    Train workers; return what Ray reported last."""
    return _on_ray(_worker, job, workers)


def pretrain_on_ray(job: dict, workers: int) -> dict:
    """Run the pretraining `job` describes (sources, out, config as a dict, resume) on `workers`
    Ray Train workers, data-parallel; return what Ray reported last."""
    return _on_ray(_pretrain_worker, job, workers)


def _on_ray(worker, job: dict, workers: int) -> dict:
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    connect()
    storage = tempfile.mkdtemp(prefix="scaletrain-ray-")
    trainer = TorchTrainer(worker, train_loop_config=job,
                           scaling_config=ScalingConfig(num_workers=workers, use_gpu=torch.cuda.is_available()),
                           run_config=RunConfig(storage_path=storage, name="scaletrain"))
    try:
        result = trainer.fit()
    except Exception as exc:  # noqa: BLE001 - Ray wraps the workers' errors in its own types
        raise ScaletrainError(f"Ray Train failed: {str(exc).strip().splitlines()[-1][:500]}") from None
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    if result.error:
        raise ScaletrainError(f"Ray Train failed: {result.error}")
    return {"metrics": result.metrics or {}, "checkpoint": result.checkpoint is not None}


def _worker(job: dict) -> None:
    """One Ray Train worker: the ordinary fit of the driver's validated config."""
    os.environ[distributed.LAUNCHED_HERE] = "1"  # the driver prints the summary
    options = FitOptions(job["out"], resume=job["resume"], callbacks=[_ReportToRay(Path(job["out"]) / "checkpoints")])
    fit_run(build_config(job["config"]), job["data"], test=job["test"], options=options)


def _pretrain_worker(job: dict) -> None:
    """One Ray Train worker of a pretraining run (the driver tokenized the corpus already)."""
    os.environ[distributed.LAUNCHED_HERE] = "1"
    pretrain(job["sources"], job["out"], build_config(job["config"]), verbose=False, resume=job["resume"],
             callbacks=[_ReportToRay(Path(job["out"]) / "checkpoints")])


class _ReportToRay(Callback):
    """After each epoch: every rank reports the epoch's metrics to Ray (it expects all to),
    rank 0 with the checkpoint it has just written."""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_epoch_end(self, state) -> None:
        import ray.train

        metrics = {"epoch": state.epoch + 1, "train_loss": state.train_loss, **state.val}
        newest = sorted(self.folder.rglob("step-*.safetensors"))[-1:] if self.folder.is_dir() else []
        if not (distributed.world().main and newest):
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as staging:
            for path in (newest[0], newest[0].with_suffix(".json")):
                shutil.copy2(path, staging)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(staging))
