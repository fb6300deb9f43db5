"""The shard directory contract: `manifest.json` (format version, schema, roles, splits, one
entry per shard with rows and CRC-32, statistics) and `stats.safetensors` (quantile sketches).

Paths go through fsspec, so a shard directory may live on s3://, gs:// or hdfs:// where the
filesystem package is installed; `memory://` is what the tests use.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

import fsspec

from scaletrain.errors import DataError

FORMAT = "scaletrain-shards"
FORMAT_VERSION = 2        # 2: CRC-32 instead of SHA-256, text stored without compression
CHECKSUM = "crc32"
MANIFEST = "manifest.json"
STATS = "stats.safetensors"
SPLITS = ("train", "val", "test")


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return (filesystem, path inside it) for a local path or an fsspec URL."""
    try:
        return fsspec.core.url_to_fs(str(url))
    except (ImportError, ValueError) as exc:
        raise DataError(f"cannot open '{url}': {exc} (install the fsspec package for that protocol)") from None


def join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def checksum_of(fs, path: str) -> str:
    """CRC-32 of a file as 8 hex digits. The checksum guards against damaged or truncated
    shards, not against tampering, so a CRC (3.6 GB/s here, vs 1.4 GB/s for SHA-256 with
    SHA-NI) serves: it is paid on every shard byte in `prepare` and again before training."""
    crc = 0
    with fs.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def write_atomic(fs, path: str, data: bytes) -> None:
    """Write under a temporary name, then move: a crash never leaves a half-written file."""
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as fh:
        fh.write(data)
    fs.mv(tmp, path)


def is_shard_dir(source) -> bool:
    if not isinstance(source, str) and not hasattr(source, "__fspath__"):
        return False
    try:
        fs, root = filesystem(str(source))
        return fs.isfile(join(root, MANIFEST))
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a shard directory
        return False


@dataclass
class Manifest:
    root: str
    data: dict

    @property
    def shards(self) -> list[dict]:
        return self.data["shards"]

    def split_shards(self, split: str) -> list[dict]:
        return [s for s in self.shards if s["split"] == split]

    def rows(self, split: str) -> int:
        return sum(s["rows"] for s in self.split_shards(split))


def read_manifest(url: str) -> Manifest:
    """Return the manifest of a shard directory, refusing other formats and versions."""
    fs, root = filesystem(url)
    path = join(root, MANIFEST)
    try:
        with fs.open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"'{url}' has no {MANIFEST}; create it with `scaletrain prepare SOURCES --out {url}`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"'{path}' is not valid JSON ({exc}); prepare the data again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"'{path}' is not a scaletrain shard manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise DataError(f"'{path}' has shard format version {data.get('format_version')}, this scaletrain reads "
                        f"version {FORMAT_VERSION}; prepare the data again with this version")
    return Manifest(root, data)


def verify_shards(manifest: Manifest, url: str) -> None:
    """Check every shard's checksum against the manifest; name the first that differs."""
    fs, _ = filesystem(url)
    for shard in manifest.shards:
        path = join(manifest.root, shard["file"])
        if not fs.exists(path):
            raise DataError(f"shard '{path}' listed in the manifest is missing; prepare the data again")
        if checksum_of(fs, path) != shard[CHECKSUM]:
            raise DataError(f"shard '{path}' does not match its checksum in the manifest (damaged or changed); "
                            "prepare the data again")
