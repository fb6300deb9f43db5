"""A run directory checked before anything is built from it.

Every file a loaded run uses is read against what it must hold: the safetensors header
(offsets and sizes inside the file, a bounded header), the model spec (known keys, sizes no
larger than the tensors present), the model's shapes — built first on the meta device, which
allocates nothing — against the tensors in the file, finite weights, preprocess.json against
its schema, the tokenizer against the embedding table, config.yaml, metrics.json and
history.csv. A damaged or tampered directory is refused with `RunDirError: RUN/file: what is
wrong`, and no edit can make loading allocate more than the files hold.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd
import torch
import yaml

from scaletrain.config import Config, build_config
from scaletrain.data.state_schema import check_state
from scaletrain.errors import ConfigError, RunDirError
from scaletrain.io import load_tensors, read_json
from scaletrain.modalities import modality
from scaletrain.models.registry import ModelSpec, build_model
from scaletrain.rundir import BACKGROUND, TOKENIZER, RunDir
from scaletrain.runlock import check_inside

MAX_HEADER = 64 * 2 ** 20  # bytes of a safetensors header: far above any model's (names and shapes)
ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
              "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
COUNTS = ("members", "depth")  # sizes that each add tensors: at most as many as the file holds
MAX_BACKGROUND_NUMBERS = 50_000_000  # 100 rows of a very wide table; past this the file is not ours


@dataclass
class Header:
    """A safetensors file's table of contents: name -> shape, and its metadata."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]

    @property
    def elements(self) -> int:
        return sum(math.prod(s) for s in self.shapes.values())


@dataclass
class CheckedRun:
    config: Config
    spec: ModelSpec
    model: torch.nn.Module
    preprocess: dict
    metrics: dict
    history: list[dict]
    background: dict | None = None


def safetensors_header(path: Path) -> Header:
    """The header of a safetensors file, checked against the file's size before any tensor is read."""
    where = f"{path}"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            declared = int.from_bytes(fh.read(8), "little")
            if size < 8 or declared > min(size - 8, MAX_HEADER):
                raise RunDirError(f"{where}: truncated or not a safetensors file (header of {declared:,} bytes "
                                  f"declared, {size:,} bytes in the file)")
            raw = fh.read(declared)
    except OSError as exc:
        raise RunDirError(f"{where}: cannot be read ({exc.strerror})") from None
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise RunDirError(f"{where}: the header is not valid JSON; the file is damaged") from None
    if not isinstance(header, dict):
        raise RunDirError(f"{where}: the header is not a JSON object; the file is damaged")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise RunDirError(f"{where}: the metadata is not a map of strings; the file is damaged")
    data_bytes, shapes = size - 8 - declared, {}
    for name, entry in header.items():
        shapes[name] = _tensor_entry(name, entry, data_bytes, where)
    return Header(shapes, metadata)


def _tensor_entry(name: str, entry, data_bytes: int, where: str) -> tuple[int, ...]:
    ok = (isinstance(entry, dict) and entry.get("dtype") in ITEM_BYTES and isinstance(entry.get("shape"), list)
          and all(isinstance(d, int) and d >= 0 for d in entry["shape"]) and isinstance(entry.get("data_offsets"), list)
          and len(entry["data_offsets"]) == 2 and all(isinstance(o, int) for o in entry["data_offsets"]))
    if not ok:
        raise RunDirError(f"{where}: tensor '{name}' has a malformed entry; the file is damaged")
    start, end = entry["data_offsets"]
    if not 0 <= start <= end <= data_bytes or end - start != math.prod(entry["shape"]) * ITEM_BYTES[entry["dtype"]]:
        raise RunDirError(f"{where}: tensor '{name}' declares data outside the file or of the wrong size; "
                          "the file is damaged")
    return tuple(entry["shape"])


def model_spec(header: Header, where: str) -> ModelSpec:
    """The model's spec from the weights' metadata: known keys, plain values, sizes bounded."""
    try:
        raw = json.loads(header.metadata["model_spec"])
    except KeyError:
        raise RunDirError(f"{where}: no model_spec in the metadata; not a scaletrain model file") from None
    except (ValueError, RecursionError):
        raise RunDirError(f"{where}: model_spec is not valid JSON; the file is damaged") from None
    known = {f.name for f in fields(ModelSpec)}
    if not isinstance(raw, dict) or not {"kind", "n_out"} <= set(raw) or set(raw) - known:
        unknown = sorted(set(raw) - known) if isinstance(raw, dict) else []
        raise RunDirError(f"{where}: model_spec is not a model description"
                          + (f" (unknown keys {unknown[:5]})" if unknown else "") + "; the file is damaged")
    for key, value in raw.items():
        _check_size(f"model_spec.{key}", value, header, where)
    try:
        spec = ModelSpec(**raw)
        spec = ModelSpec(**{**raw, "cardinalities": tuple(spec.cardinalities), "shape": tuple(spec.shape),
                            "mean": tuple(spec.mean), "std": tuple(spec.std)})
    except TypeError as exc:
        raise RunDirError(f"{where}: model_spec has values of the wrong type ({exc})") from None
    return spec


def _check_size(key: str, value, header: Header, where: str, counts_only: bool = False) -> None:
    """A size no larger than the tensors present can hold (lists checked entry by entry). A
    count of layers or members builds that many modules, even on the meta device: at most as
    many as the file has tensors (or a few dozen, for settings a model may ignore)."""
    most_modules = max(len(header.shapes), 64)
    values = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) > most_modules:
        raise RunDirError(f"{where}: {key} lists {len(value):,} entries, more than the weights hold")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        counts = key.rsplit(".", 1)[-1] in COUNTS
        if counts_only and not counts:
            continue
        limit = most_modules if counts else max(header.elements, 1)
        if not math.isfinite(v) or abs(v) > limit:
            raise RunDirError(f"{where}: {key} = {v} does not fit the {len(header.shapes):,} tensors "
                              f"({header.elements:,} numbers) in the file; the run directory is damaged")


def check_shapes(spec: ModelSpec, config: Config, header: Header, where: str) -> None:
    """Build the model on the meta device (no memory) and compare its tensors with the file's."""
    for section in [config.model, *(config.model.members or [])]:  # a blend's members build modules too
        for key, value in section.model_dump(exclude={"members"}).items():
            _check_size(f"config model.{key}", value, header, where, counts_only=True)
    try:
        with torch.device("meta"):
            skeleton = build_model(spec, config.model)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a spec no builder accepts, whatever the builder raised
        raise RunDirError(f"{where}: the model it describes cannot be built ({type(exc).__name__}: {exc})"[:400]) from None
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    missing = sorted(set(expected) - set(header.shapes))
    extra = sorted(set(header.shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(header.shapes) if expected[k] != header.shapes[k])
    if missing or extra or wrong:
        first = (f"'{wrong[0]}' is {header.shapes[wrong[0]]}, the model needs {expected[wrong[0]]}" if wrong else
                 f"'{missing[0]}' is missing" if missing else f"'{extra[0]}' is not the model's")
        raise RunDirError(f"{where}: the weights do not fit the model config.yaml and the spec describe ({first}); "
                          "the run directory is damaged or mixed from two runs")


def read_config(folder: RunDir) -> Config:
    where = folder.path / "config.yaml"
    try:
        tree = yaml.safe_load(where.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise RunDirError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(tree, dict):
        raise RunDirError(f"{where}: expected a mapping of config sections, got {type(tree).__name__}")
    try:
        return build_config(tree)
    except ConfigError as exc:
        raise RunDirError(f"{where}: {exc}") from None


def read_preprocess(folder: RunDir) -> dict:
    where = folder.path / "preprocess.json"
    state = read_json(where)
    if not isinstance(state, dict) or not isinstance(state.get("kind"), str):
        raise RunDirError(f"{where}: expected a JSON object with the modality's 'kind'")
    check_state(modality(state["kind"]).state_schema, state, str(where))
    return folder.read_preprocess()


def read_tokenizer_size(folder: RunDir, state: dict) -> int | None:
    """The vocabulary size of the run's tokenizer.json (None: no text)."""
    if state.get("text") is None:
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(state["text"]["tokenizer"]).get_vocab_size()
    except Exception as exc:  # noqa: BLE001 - tokenizers raises its own exception type
        raise RunDirError(f"{folder.path / TOKENIZER}: not a tokenizer ({str(exc)[:200]})") from None


def read_results(folder: RunDir) -> tuple[dict, list[dict]]:
    metrics = folder.read_metrics()
    if not isinstance(metrics, dict):
        raise RunDirError(f"{folder.path / 'metrics.json'}: expected a JSON object")
    file = folder.path / "history.csv"
    if not file.is_file():
        return metrics, []
    try:
        history = pd.read_csv(io.StringIO(file.read_text(encoding="utf-8")))
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise RunDirError(f"{file}: not a readable CSV ({str(exc).splitlines()[0][:200]})") from None
    return metrics, history.to_dict("records")


def opened(path: str | Path) -> tuple[RunDir, Config, Path, Header]:
    """What every run directory passes before its model is read: complete, nothing linked out
    of it, a valid config.yaml, and model.safetensors' header (its tensors not yet read)."""
    folder = RunDir(path)
    folder.check_complete()
    check_inside(folder.path)
    config = read_config(folder)
    weights = folder.path / "model.safetensors"
    return folder, config, weights, safetensors_header(weights)


def check_finite(tensors: dict[str, torch.Tensor], where: Path) -> None:
    bad = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise RunDirError(f"{where}: tensor '{bad}' holds NaN or infinite values; the run directory is damaged")


def load_checked(path: str | Path) -> CheckedRun:
    """Read and check every file of a run directory, then build its model (see the module's doc)."""
    folder, config, weights, header = opened(path)
    spec = model_spec(header, str(weights))
    preprocess = read_preprocess(folder)
    check_shapes(spec, config, header, str(weights))
    problem = modality(preprocess["kind"]).check_run(preprocess, spec, read_tokenizer_size(folder, preprocess))
    if problem:
        raise RunDirError(f"{folder.path / 'preprocess.json'}: {problem}; the run directory is damaged")
    model = build_model(spec, config.model)
    state_dict = folder.read_weights()
    check_finite(state_dict, weights)
    model.load_state_dict(state_dict)
    inputs = spec.n_dense + len(spec.cardinalities)
    problem = next((found for m in model.modules() if hasattr(m, "table_problem") for found in [m.table_problem(inputs)]
                    if found), None)
    if problem:
        raise RunDirError(f"{weights}: {problem}; the run directory is damaged")
    return CheckedRun(config, spec, model, preprocess, *read_results(folder), read_background(folder, spec, preprocess))


def read_background(folder: RunDir, spec: ModelSpec, preprocess: dict) -> dict | None:
    """The run's background sample (None for runs written before it was kept), checked
    against the model's inputs: codes inside the embedding tables, finite numbers."""
    path = folder.path / BACKGROUND
    if not path.exists():
        return None
    header = safetensors_header(path)
    if header.elements > MAX_BACKGROUND_NUMBERS:
        raise RunDirError(f"{path}: {header.elements:,} numbers, more than a background sample holds")
    tensors = load_tensors(path)
    problem = modality(preprocess["kind"]).check_background(tensors, spec)
    if problem:
        raise RunDirError(f"{path}: {problem}; the run directory is damaged")
    return tensors
