"""Mutations of a run directory's files, as a careless user or an attacker would make them:
truncated, emptied, random bytes, wrong JSON types, missing keys, deep nesting, a symlink
out of the directory, huge declared sizes, NaN and zero scales. Each takes the file's path
and a seeded generator and rewrites the file in place."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np


def truncate(path: Path, rng) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * rng.uniform(0.05, 0.95))])


def empty(path: Path, rng) -> None:
    path.write_bytes(b"")


def random_bytes(path: Path, rng) -> None:
    path.write_bytes(rng.integers(0, 256, max(path.stat().st_size, 64), dtype=np.uint8).tobytes())


def flip_bytes(path: Path, rng) -> None:
    data = bytearray(path.read_bytes())
    for i in rng.integers(0, len(data), 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def symlink_out(path: Path, rng) -> None:
    outside = path.parent.parent / f"outside-{path.name}"
    outside.write_bytes(path.read_bytes())
    path.unlink()
    os.symlink(outside, path)


# ---------------------------------------------------------------- JSON (and YAML, read as JSON-like trees)
def _leaves(tree, trail=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, trail + (key,))
    elif isinstance(tree, list) and tree:
        for i, value in enumerate(tree[:8]):
            yield from _leaves(value, trail + (i,))
    else:
        yield trail, tree


def _set(tree, trail, value):
    if not trail:
        return value
    node = tree
    for step in trail[:-1]:
        node = node[step]
    node[trail[-1]] = value
    return tree


def _json_edit(edit):
    def mutate(path: Path, rng) -> None:
        tree = json.loads(path.read_text())
        leaves = list(_leaves(tree))
        trail, value = leaves[int(rng.integers(len(leaves)))]
        path.write_text(json.dumps(edit(tree, trail, value, rng)))
    mutate.__name__ = edit.__name__
    return mutate


@_json_edit
def wrong_type(tree, trail, value, rng):
    other = {str: 12345, int: "twelve", float: ["a", "list"], bool: {"an": "object"}, type(None): 3.5}
    return _set(tree, trail, other.get(type(value), "text"))


@_json_edit
def missing_key(tree, trail, value, rng):
    node = tree
    for step in trail[:-1]:
        node = node[step]
    if isinstance(node, dict) and trail:
        del node[trail[-1]]
    elif isinstance(tree, dict) and tree:
        del tree[next(iter(tree))]
    return tree


def deep_nesting(path: Path, rng) -> None:
    tree = json.loads(path.read_text())
    leaves = list(_leaves(tree))
    trail, _ = leaves[int(rng.integers(len(leaves)))]
    text = json.dumps(_set(tree, trail, "@@deep@@"))
    path.write_text(text.replace('"@@deep@@"', "[" * 5000 + "1" + "]" * 5000))


@_json_edit
def huge_number(tree, trail, value, rng):
    numbers = [(t, v) for t, v in _leaves(tree) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers:
        trail = numbers[int(rng.integers(len(numbers)))][0]
    return _set(tree, trail, 10 ** 12)


def nan_or_zero(path: Path, rng) -> None:
    tree = json.loads(path.read_text())
    numbers = [t for t, v in _leaves(tree) if isinstance(v, float)]
    for trail in numbers[: max(1, len(numbers) // 3)]:
        _set(tree, trail, float("nan") if rng.random() < 0.5 else 0.0)
    path.write_text(json.dumps(tree))  # NaN as JSON's non-standard NaN, as Python writes it


def not_an_object(path: Path, rng) -> None:
    path.write_text(json.dumps([1, 2, 3]))


# ---------------------------------------------------------------- safetensors
def _header(path: Path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _write(path: Path, header: dict, body: bytes) -> None:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def huge_header_length(path: Path, rng) -> None:
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", 2 ** 62) + data[8:])


def spec_edit(key: str, value):
    def mutate(path: Path, rng) -> None:
        header, body = _header(path)
        meta = header.get("__metadata__", {})
        name = "model_spec" if "model_spec" in meta else "state"
        tree = json.loads(meta[name])
        tree[key] = value
        meta[name] = json.dumps(tree)
        _write(path, header, body)
    mutate.__name__ = f"spec_{key}"
    return mutate


def spec_not_json(path: Path, rng) -> None:
    header, body = _header(path)
    meta = header.get("__metadata__", {})
    meta[next(iter(meta))] = "{not json"
    _write(path, header, body)


def nan_weights(path: Path, rng) -> None:
    header, body = _header(path)
    body = bytearray(body)
    for name, entry in header.items():
        if name != "__metadata__" and entry["dtype"] == "F32":
            start, end = entry["data_offsets"]
            body[start:end] = np.full((end - start) // 4, np.nan, np.float32).tobytes()
            break
    _write(path, header, bytes(body))


def big_codes(path: Path, rng) -> None:
    header, body = _header(path)
    body = bytearray(body)
    for name, entry in header.items():
        if name != "__metadata__" and entry["dtype"] == "I64":
            start, end = entry["data_offsets"]
            body[start:end] = np.full((end - start) // 8, 10 ** 6, np.int64).tobytes()
    _write(path, header, bytes(body))


def shape_lie(path: Path, rng) -> None:
    header, body = _header(path)
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [10 ** 6, 10 ** 6]
    _write(path, header, body)


# ---------------------------------------------------------------- YAML, text files
def yaml_list(path: Path, rng) -> None:
    path.write_text("- 1\n- 2\n")


def yaml_unknown_key(path: Path, rng) -> None:
    path.write_text(path.read_text() + "\nsurprise:\n  key: 1\n")


def yaml_huge_model(path: Path, rng) -> None:
    import yaml

    tree = yaml.safe_load(path.read_text())
    tree["model"]["hidden"] = [10 ** 9, 10 ** 9]
    tree["model"]["depth"] = 10 ** 9
    path.write_text(yaml.safe_dump(tree))


def yaml_huge_blend(path: Path, rng) -> None:
    """A blend whose members each ask for a billion layers."""
    import yaml

    tree = yaml.safe_load(path.read_text())
    tree["model"] = {"name": "blend", "members": [{"name": "mlp", "depth": 10 ** 9}] * 8, "weights": [1.0] * 8}
    path.write_text(yaml.safe_dump(tree))


def yaml_nested_blend(path: Path, rng) -> None:
    """Blends inside blends, a hundred deep."""
    import yaml

    tree = yaml.safe_load(path.read_text())
    model = {"name": "mlp"}
    for _ in range(100):
        model = {"name": "blend", "members": [model], "weights": [1.0]}
    tree["model"] = model
    path.write_text(yaml.safe_dump(tree))


def tokenizer_grown(path: Path, rng) -> None:
    tree = json.loads(path.read_text())
    vocab = tree["model"]["vocab"]
    for i in range(5000):
        vocab[f"extra{i}"] = len(vocab)
    path.write_text(json.dumps(tree))


def binary(path: Path, rng) -> None:
    path.write_bytes(b"\x00\xff\xfe" * 200 + rng.integers(0, 256, 500, dtype=np.uint8).tobytes())


BYTES = [truncate, empty, random_bytes, flip_bytes, symlink_out]
JSON = BYTES + [wrong_type, missing_key, deep_nesting, huge_number, nan_or_zero, not_an_object]
SAFETENSORS = BYTES + [huge_header_length, spec_not_json, nan_weights, shape_lie, spec_edit("members", 10 ** 9),
                       spec_edit("n_out", 10 ** 12), spec_edit("n_dense", -3), spec_edit("surprise", 1),
                       spec_edit("cardinalities", [10 ** 9] * 3), spec_edit("pair_buckets", 10 ** 9)]
FILES = {
    "model.safetensors": SAFETENSORS,
    "preprocess.json": JSON,
    "metrics.json": JSON,
    "config.yaml": BYTES + [yaml_list, yaml_unknown_key, yaml_huge_model, yaml_huge_blend, yaml_nested_blend],
    "tokenizer.json": JSON + [tokenizer_grown],
    "history.csv": BYTES + [binary],
    "background.safetensors": BYTES + [huge_header_length, nan_weights, shape_lie, big_codes],
}


def with_state_changed(run_dir: Path, copy: Path, change: dict) -> Path:
    """A copy of a run directory whose preprocess.json has the keys of `change` replaced."""
    import shutil

    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints"))
    state = json.loads((copy / "preprocess.json").read_text())
    (copy / "preprocess.json").write_text(json.dumps(state | change))
    return copy
