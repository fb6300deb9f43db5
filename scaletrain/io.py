"""Atomic writes of JSON, YAML, text and safetensors: temporary file, fsync, rename.

A crash or full disk mid-write then leaves the old file whole, never a half-written one.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from scaletrain.errors import RunDirError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_plain) + "\n")


def write_yaml(path: str | Path, obj) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def read_json(path: str | Path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError:
        raise RunDirError(f"'{path}' is missing; is '{path.parent}' a scaletrain run directory?") from None
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, a number of 4,300+ digits, deep nesting
        reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise RunDirError(f"'{path}' is not valid JSON ({reason}); the run directory is damaged") from None


def _no_constant(name: str):
    """NaN and Infinity are not JSON (write_json never writes them): a file holding one is damaged."""
    raise ValueError(f"{name} is not a JSON number")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        except OSError:
            raise
        except Exception as exc:  # safetensors reports a full disk as its own SafetensorError
            raise _as_os_error(exc, tmp) from None
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_os_error(exc: Exception, path: str) -> Exception:
    """safetensors' I/O failure as the OSError it wraps (`I/O error: ... (os error 28)`, or
    `IoError(Os { code: 28, ... })` in older versions)."""
    code = re.search(r"(?:os error|code:) (\d+)", str(exc))
    if code is None:
        return exc
    return OSError(int(code.group(1)), os.strerror(int(code.group(1))), path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"'{path}' is missing; is '{path.parent}' a scaletrain run directory?")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError on damage
        raise RunDirError(f"'{path}' is not a valid safetensors file ({exc})") from None
