"""A recommender run directory, written and read back checked.

    config.yaml        the resolved config              metrics.json  split, candidates, test figures
    model.safetensors  the scorer's weights, the spec in its metadata
    history.safetensors  the users' histories (CSR rows; histories.py), opened memory-mapped
    preprocess.json    the roles and the user and item ids, in index order
    report.html        the report

Loading checks every file before anything is built from it: the spec names a known model, the
ids are lists, each tensor has exactly the shape the ids imply (read from the safetensors
header before any tensor is), the weights are finite, and the histories are well-formed CSR
rows of item indices inside the catalogue. A damaged or tampered directory is a RunDirError
naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

from scaletrain.config import Config
from scaletrain.errors import RunDirError
from scaletrain.io import read_json
from scaletrain.recommend.histories import FILE, open_histories, save_histories
from scaletrain.recommend.recommender import Recommender
from scaletrain.recommend.scorers import SCORERS, scorer_of
from scaletrain.runcheck import check_finite, opened, read_results
from scaletrain.rundir import RunDir

KIND = "recommender"  # model_spec's kind: what tells a recommender run from a row model's
MAX_IDS = 50_000_000


def is_recommender(path: str | Path) -> bool:
    try:
        return (Path(path) / "model.safetensors").is_file() and RunDir(path).read_spec().get("kind") == KIND
    except RunDirError:  # damaged: loading it says what is wrong
        return False


def save(path: Path, cfg: Config, recommender: Recommender, metrics: dict, roles: dict) -> None:
    """The run directory; histories a streamed fit already wrote there (mapped from it) stay as they are."""
    tensors = dict(recommender.scorer.weights)
    written = getattr(recommender.indices, "filename", None)
    if written is None or Path(written).resolve() != (path / FILE).resolve():
        path.mkdir(parents=True, exist_ok=True)
        save_histories(path / FILE, recommender.indptr, recommender.indices)
    state = {"kind": "interactions", "roles": roles, "users": recommender.user_ids, "items": recommender.item_ids,
             "min_rating": cfg.data.min_rating, "target": {"task": "recommend"}}
    folder = RunDir(path)
    folder.write_model(cfg.to_dict(), tensors, {"kind": KIND, **recommender.scorer.spec}, state)
    folder.write_results(metrics, [])


def expected_shapes(spec: dict, n_users: int, n_items: int, header_shapes: dict) -> dict[str, tuple]:
    shapes = {"popularity": (n_items,)}
    if spec["model"] == "ease":
        shapes["ease"] = (n_items, n_items)
    if spec["model"] == "twotower":
        dim = header_shapes.get("items", (0, 0))[-1]
        shapes |= {"items": (n_items, dim), "bias": (n_items,)}
        if "users_side" in header_shapes:  # a users side table's vectors, one per user
            shapes["users_side"] = (n_users, dim)
    if spec["model"] == "mf":
        rows, dim = header_shapes.get("users", (0, 0))
        rows = rows if 1 <= rows <= n_users else n_users  # fewer: users folded into rows (USER_ROWS)
        shapes |= {"users": (rows, dim), "items": (n_items, dim), "bias": (n_items,)}
    return shapes


def _ids(state: dict, key: str, where: Path) -> list:
    ids = state.get(key)
    if not isinstance(ids, list) or not ids or len(ids) > MAX_IDS or not all(isinstance(v, (str, int)) for v in ids):
        raise RunDirError(f"{where}: '{key}' must be a non-empty list of ids (strings or integers); the run "
                          "directory is damaged")
    return ids


def load(path: str | Path) -> tuple[Recommender, Config, dict]:
    """The recommender stored in `path`, its config and its metrics, every file checked first."""
    folder, config, weights_file, header = opened(path)
    try:
        spec = json.loads(header.metadata.get("model_spec", ""))
    except ValueError:
        raise RunDirError(f"{weights_file}: model_spec is not JSON; the file is damaged") from None
    if not isinstance(spec, dict) or spec.get("kind") != KIND or spec.get("model") not in SCORERS:
        raise RunDirError(f"{weights_file}: not a recommender's weights (model_spec {str(spec)[:120]})")
    if not all(isinstance(v, (int, float)) and 0 <= v < 1e9 for k, v in spec.items() if k not in ("kind", "model")):
        raise RunDirError(f"{weights_file}: the model's settings {str(spec)[:120]} are not non-negative numbers; "
                          "the run directory is damaged")
    state_file = folder.path / "preprocess.json"
    state = read_json(state_file)
    if not isinstance(state, dict):
        raise RunDirError(f"{state_file}: expected a JSON object")
    users, items = _ids(state, "users", state_file), _ids(state, "items", state_file)
    expected = expected_shapes(spec, len(users), len(items), header.shapes)
    for name, shape in expected.items():
        if header.shapes.get(name) != tuple(shape):
            raise RunDirError(f"{weights_file}: tensor '{name}' has shape {header.shapes.get(name)}, but the "
                              f"{len(users):,} users and {len(items):,} items of preprocess.json need {tuple(shape)}")
    if not (folder.path / FILE).is_file() and "history.indptr" in header.shapes:
        raise RunDirError(f"{folder.path}: written by an older scaletrain (the histories inside model.safetensors, "
                          f"not in {FILE}); train it again with this version")
    tensors = folder.read_weights()
    check_finite(tensors, weights_file)
    indptr, indices = open_histories(folder.path / FILE, len(users), len(items))
    weights = {k: v for k, v in tensors.items() if k in expected}
    spec = {k: v for k, v in spec.items() if k != "kind"}
    metrics, _ = read_results(folder)
    return Recommender(scorer_of(spec, weights), indptr, indices, users, items), config, metrics
