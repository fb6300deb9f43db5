"""The run directory: the one writer (and reader) of every file in it.

    config.yaml         the fully resolved config          preprocess.json   fitted preprocessing
    model.safetensors   weights (the model's spec inside)  metrics.json      task, metrics, notes
    history.csv         one row per epoch                  report.html       the report
    cv.json             k-fold results (train --cv)        checkpoints/      resumable state
    background.safetensors  a sample of encoded training rows (explanations are measured against it)
    tokenizer.json      text: the fitted tokenizer (Hugging Face `tokenizers` format)
    hf/                 pretraining runs: encoder + tokenizer for Hugging Face transformers
    (a search's folder: leaderboard.csv, tune.json, and best/, a run directory)

Every write is atomic (temporary name, fsync, rename: io.py), so a crash never leaves a
half-written file, and a checkpoint carries a SHA-256 in its sidecar.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch
import yaml

from scaletrain.errors import RunDirError
from scaletrain.io import load_tensors, read_json, save_tensors, write_json, write_text, write_yaml

REQUIRED = ("config.yaml", "model.safetensors", "preprocess.json")
CHECKPOINTS = "checkpoints"
TOKENIZER = "tokenizer.json"
BACKGROUND = "background.safetensors"  # encoded training rows explanations are measured against
HF = "hf"


def default_out(name: str) -> Path:
    """A new run directory's path when none is given: runs/NAME-date-time."""
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(path: str | Path) -> str:
    """SHA-256 over the files a loaded run predicts from: an export names what it was built from."""
    digest = hashlib.sha256()
    for name in REQUIRED + (TOKENIZER,):
        if (Path(path) / name).exists():
            digest.update(f"{name}:{sha256_of(Path(path) / name)};".encode())
    return digest.hexdigest()


class RunDir:
    """Paths and atomic writes of one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ------------------------------------------------------------ writing
    def write_model(self, config: dict, state_dict: dict[str, torch.Tensor], spec: dict, preprocess: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_yaml(self.path / "config.yaml", config)
        save_tensors(self.path / "model.safetensors", state_dict, metadata={"model_spec": json.dumps(spec)})
        text = preprocess.get("text")
        if text is not None:  # the tokenizer in its own standard file, loadable by `tokenizers` alone
            write_text(self.path / TOKENIZER, text["tokenizer"])
            preprocess = preprocess | {"text": {k: v for k, v in text.items() if k != "tokenizer"} | {"tokenizer": TOKENIZER}}
        write_json(self.path / "preprocess.json", preprocess)

    def write_background(self, tensors: dict[str, torch.Tensor]) -> None:
        save_tensors(self.path / BACKGROUND, tensors)

    def write_tokenizer(self, tokenizer_json: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.path / TOKENIZER, tokenizer_json)

    def write_pretrained(self, config: dict, state_dict: dict[str, torch.Tensor], encoder: dict) -> None:
        """A pretraining run: the masked-LM's weights, its encoder's shape in their metadata."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_yaml(self.path / "config.yaml", config)
        save_tensors(self.path / "model.safetensors", state_dict,
                     metadata={"model_spec": json.dumps({"kind": "masked_lm", "encoder": encoder})})

    def write_hf(self, tensors: dict[str, torch.Tensor], config: dict, tokenizer_config: dict) -> Path:
        """`hf/`: what Hugging Face transformers' Auto classes load (the tokenizer copied in)."""
        folder = self.path / HF
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / "model.safetensors", tensors, metadata={"format": "pt"})
        write_json(folder / "config.json", config)
        write_text(folder / TOKENIZER, (self.path / TOKENIZER).read_text(encoding="utf-8"))
        write_json(folder / "tokenizer_config.json", tokenizer_config)
        return folder

    def is_pretrained(self) -> bool:
        try:
            return (self.path / "model.safetensors").is_file() and self.read_spec().get("kind") == "masked_lm"
        except RunDirError:  # damaged: the full check when it is loaded says what is wrong
            return False

    def read_tokenizer(self) -> str:
        path = self.path / TOKENIZER
        if not path.is_file():
            raise RunDirError(f"'{self.path}' has no {TOKENIZER}; is it a pretraining or text run directory?")
        return path.read_text(encoding="utf-8")

    def write_results(self, metrics: dict, history: list[dict]) -> None:
        if metrics:
            write_json(self.path / "metrics.json", metrics)
        if history:
            write_text(self.path / "history.csv", pd.DataFrame(history).to_csv(index=False))

    def write_report(self, html: str) -> None:
        write_text(self.path / "report.html", html)

    def write_leaderboard(self, leaderboard_csv: str) -> None:
        """A search's folder: leaderboard.csv, then tune.json (its best run is a run directory in best/)."""
        write_text(self.path / "leaderboard.csv", leaderboard_csv)

    def write_tune(self, summary: dict) -> None:
        write_json(self.path / "tune.json", summary)

    def write_cv(self, result: dict) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "cv.json", result)
        return self.path / "cv.json"

    # ------------------------------------------------------------ reading
    def check_complete(self) -> None:
        if not self.path.is_dir():
            raise RunDirError(f"run directory '{self.path}' does not exist")
        missing = [f for f in REQUIRED if not (self.path / f).is_file()]
        if missing and self.is_pretrained():
            raise RunDirError(f"'{self.path}' is a pretraining run (a text encoder, no task head): fine-tune it with "
                              f"`scaletrain train DATA --target COL --set model.init_from={self.path}`")
        if missing:
            raise RunDirError(f"'{self.path}' is not a complete run directory: {', '.join(missing)} missing")

    def read_config(self) -> dict:
        try:
            return yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RunDirError(f"'{self.path / 'config.yaml'}' is damaged: {exc}") from None

    def read_spec(self) -> dict:
        from safetensors import safe_open

        where = self.path / "model.safetensors"
        try:
            with safe_open(str(where), "pt") as fh:
                spec = json.loads((fh.metadata() or {})["model_spec"])
        except Exception:  # noqa: BLE001 - safetensors' own error type, a missing key, bad JSON
            raise RunDirError(f"{where}: not a scaletrain model file, or damaged") from None
        if not isinstance(spec, dict):
            raise RunDirError(f"{where}: model_spec is not a JSON object; the file is damaged")
        return spec

    def read_weights(self) -> dict[str, torch.Tensor]:
        return load_tensors(self.path / "model.safetensors")

    def read_preprocess(self) -> dict:
        state = read_json(self.path / "preprocess.json")
        text = state.get("text") if isinstance(state, dict) else None
        if text is not None:
            if not isinstance(text, dict) or text.get("tokenizer") != TOKENIZER:  # never a path out of the run
                raise RunDirError(f"{self.path / 'preprocess.json'}: text.tokenizer must be '{TOKENIZER}'")
            path = self.path / TOKENIZER
            if not path.is_file():
                raise RunDirError(f"'{self.path}' is not a complete run directory: {TOKENIZER} missing")
            try:
                state["text"] = text | {"tokenizer": path.read_text(encoding="utf-8")}
            except UnicodeDecodeError:
                raise RunDirError(f"{path}: not UTF-8 text; the run directory is damaged") from None
        return state

    def read_metrics(self) -> dict:
        return read_json(self.path / "metrics.json") if (self.path / "metrics.json").is_file() else {}

    def read_history(self) -> list[dict]:
        file = self.path / "history.csv"
        return pd.read_csv(file).to_dict("records") if file.is_file() else []


class CheckpointFolder:
    """The checkpoints of a run: safetensors files with a JSON sidecar holding their SHA-256."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("step-*.safetensors")) if self.folder.is_dir() else []

    def write(self, name: str, tensors: dict[str, torch.Tensor], meta: dict, summary: dict) -> Path:
        """Write one checkpoint under a partial name, then its sidecar, then rename it into
        place: a kill at any moment leaves every visible checkpoint with its sidecar (a resume
        refuses a folder whose checkpoints are all unverifiable). On an OSError remove what
        was written and re-raise."""
        path = self.folder / name
        partial = self.folder / f".partial-{name}"
        try:
            save_tensors(partial, tensors, metadata={"state": json.dumps(meta)})
            write_json(path.with_suffix(".json"), {"sha256": sha256_of(partial), **summary})
            os.replace(partial, path)
        except OSError:
            for leftover in (partial, path, path.with_suffix(".json")):
                try:
                    leftover.unlink(missing_ok=True)
                except OSError:
                    pass
            raise
        return path

    def prune(self, keep: int) -> None:
        """Remove all but the newest `keep` (only after a save succeeded), and sidecars whose
        checkpoint a kill stopped before its rename."""
        for old in self.files()[:-keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)
        for sidecar in self.folder.glob("step-*.json"):
            if not sidecar.with_suffix(".safetensors").exists():
                sidecar.unlink(missing_ok=True)

    def verifies(self, path: Path) -> bool:
        """True if the checkpoint's checksum matches its sidecar's."""
        try:
            sidecar = read_json(path.with_suffix(".json"))
            return isinstance(sidecar, dict) and sidecar.get("sha256") == sha256_of(path)
        except (RunDirError, OSError):
            return False

    def read(self, path: Path) -> tuple[dict[str, torch.Tensor], dict]:
        from safetensors import safe_open
        from safetensors.torch import load_file

        if not self.verifies(path):
            raise RunDirError("checksum mismatch")
        with safe_open(str(path), "pt") as fh:
            meta = json.loads(fh.metadata()["state"])
        return load_file(str(path)), meta
