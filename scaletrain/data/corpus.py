"""Plain-text corpora for pretraining: `.txt` (a document per line, or per file), JSONL with a
text field, any of them gzip/bz2/xz-compressed, given as files, folders or globs.

Documents stream one at a time (a corpus larger than memory is read once, file by file).
Damaged input is skipped and counted for the run's notes rather than stopping a long run:
files that are binary, lines that are not UTF-8 (decoded with replacement characters), empty
documents, JSONL lines that do not parse; documents longer than MAX_DOCUMENT_CHARS are cut
into pieces at whitespace so one 10 MB line cannot stall the tokenizer.
"""
from __future__ import annotations

import bz2
import glob
import gzip
import json
import lzma
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from scaletrain.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

TEXT_SUFFIXES = (".txt", ".text", ".md", ".jsonl", ".json", ".ndjson")
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
MAX_DOCUMENT_CHARS = 100_000
BINARY_PROBE = 8192


def corpus_files(sources: list[str | Path]) -> list[Path]:
    """The files behind paths, folders (searched recursively for text files) and globs, sorted."""
    found: list[Path] = []
    for source in sources:
        text = str(source)
        matches = sorted(glob.glob(text, recursive=True)) if any(c in text for c in "*?[") else [text]
        if not matches:
            raise DataError(f"no files match '{text}'")
        for match in map(Path, matches):
            if match.is_dir():
                found += sorted(p for p in match.rglob("*") if p.is_file() and _is_text_name(p))
            elif match.is_file():
                found.append(match)
            else:
                raise DataError(f"corpus file '{match}' does not exist")
    if not found:
        raise DataError(f"no text files (.txt, .jsonl, optionally .gz/.bz2/.xz) in {', '.join(map(str, sources))}")
    return found


def _is_text_name(path: Path) -> bool:
    name = path.name.lower()
    for suffix in OPENERS:
        name = name.removesuffix(suffix)
    return name.endswith(TEXT_SUFFIXES)


class Corpus:
    """Iterates the documents of a list of files; `skipped` counts what was left out and why."""

    def __init__(self, files: list[Path], per: str = "line", field: str = "text", span: tuple[int, int] | None = None):
        self.files, self.per, self.field = files, per, field
        self.span = span  # (start, end) bytes of one plain file: the lines that start in it
        self.skipped: Counter = Counter()

    def __iter__(self) -> Iterator[str]:
        for path in self.files:
            for document in self._documents(path):
                document = document.strip()
                if not document:
                    self.skipped["empty documents"] += 1
                    continue
                if len(document) > MAX_DOCUMENT_CHARS:
                    self.skipped["documents cut into pieces (over 100,000 characters)"] += 1
                    yield from _pieces(document)
                else:
                    yield document

    def _documents(self, path: Path) -> Iterator[str]:
        if self.span is not None:
            yield from self._span_lines(path, *self.span)
            return
        opener = OPENERS.get(path.suffix.lower(), open)
        try:
            with opener(path, "rb") as fh:
                head = fh.read(BINARY_PROBE)
                if b"\x00" in head:
                    self.skipped[f"binary files ({path.name})"] += 1
                    return
                stem = path.name.lower()
                for suffix in OPENERS:
                    stem = stem.removesuffix(suffix)
                json_lines = stem.endswith((".jsonl", ".json", ".ndjson"))
                if self.per == "file" and not json_lines:
                    yield self._decode(head + fh.read())
                    return
                rest = head.split(b"\n")
                carry = rest.pop()
                for line in rest:
                    yield from self._line(line, json_lines, path)
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    lines = (carry + chunk).split(b"\n")
                    carry = lines.pop()
                    for line in lines:
                        yield from self._line(line, json_lines, path)
                if carry:  # a last line without its newline
                    yield from self._line(carry, json_lines, path)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise DataError(f"cannot read corpus file '{path}': {exc}; check that it is complete") from None

    def _span_lines(self, path: Path, start: int, end: int) -> Iterator[str]:
        json_lines = path.name.lower().endswith((".jsonl", ".json", ".ndjson"))
        with open(path, "rb") as fh:
            if start > 0:
                fh.seek(start - 1)
                fh.readline()  # the line holding byte start - 1 belongs to the piece before
            while fh.tell() < end:
                line = fh.readline()
                if not line:
                    break
                yield from self._line(line.rstrip(b"\n"), json_lines, path)

    def _line(self, raw: bytes, json_lines: bool, path: Path) -> Iterator[str]:
        text = self._decode(raw)
        if not json_lines:
            yield text
            return
        if not text.strip():
            return
        try:
            value = json.loads(text).get(self.field)
        except (json.JSONDecodeError, AttributeError):
            self.skipped[f"JSONL lines that do not parse ({path.name})"] += 1
            return
        if not isinstance(value, str):
            self.skipped[f"JSONL lines without a text '{self.field}' field (data.text_field)"] += 1
            return
        yield value

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.skipped["lines or files not valid UTF-8 (read with replacement characters)"] += 1
            return raw.decode("utf-8", errors="replace")

    def notes(self) -> list[str]:
        return [f"skipped or changed {count:,} {what}" for what, count in sorted(self.skipped.items())]


def _pieces(document: str) -> Iterator[str]:
    start = 0
    while start < len(document):
        end = min(start + MAX_DOCUMENT_CHARS, len(document))
        if end < len(document):
            cut = document.rfind(" ", start + MAX_DOCUMENT_CHARS // 2, end)
            end = cut if cut > 0 else end
        yield document[start:end]
        start = end


def is_text_folder(path: Path) -> bool:
    """A folder of .txt files, directly or in one subfolder per class."""
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    if any(p.is_file() and p.suffix.lower() in (".csv", ".tsv", ".parquet", ".jsonl", ".json") for p in entries):
        return False
    return any(p.suffix.lower() == ".txt" for p in entries if p.is_file()) or any(
        d.is_dir() and any(f.suffix.lower() == ".txt" for f in d.iterdir()) for d in entries)


def read_text_folder(path: Path, target: str = "label") -> "pd.DataFrame":
    """A table of the folder's texts: columns `text` and `file`, and (one subfolder per class)
    `label`, the subfolder's name. Binary files are refused with their name."""
    import pandas as pd

    rows = []
    classes = sorted(d for d in path.iterdir() if d.is_dir())
    for folder, label in [(d, d.name) for d in classes] + [(path, None)]:
        for file in sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() == ".txt"):
            raw = file.read_bytes()
            if b"\x00" in raw[:BINARY_PROBE]:
                raise DataError(f"'{file}' is not text (it holds NUL bytes); remove it from the folder")
            row = {"text": raw.decode("utf-8", errors="replace"), "file": str(file.relative_to(path))}
            rows.append(row | ({target: label} if label is not None else {}))
    if not rows:
        raise DataError(f"'{path}' holds no .txt files")
    frame = pd.DataFrame(rows)
    if classes and frame[target].isna().any():
        raise DataError(f"'{path}' mixes .txt files at its top with class subfolders; move them into a subfolder")
    return frame
