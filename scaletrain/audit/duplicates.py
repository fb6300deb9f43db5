"""Exact and near-duplicate rows, images and texts, within and across the splits.

- table rows: a hash of the row's values (the target left out: the same input with two labels
  is a duplicate too, and a worse one); near duplicates hash the row again with numbers
  rounded to 3 significant digits and text lower-cased and stripped;
- images: a 64-bit perceptual hash (pHash: the signs of a 32×32 greyscale thumbnail's lowest
  8×8 DCT frequencies against their median; a difference hash flips on flat backgrounds at
  the slightest noise), computed for all images at once — imagehash does the same one PIL
  image at a time — and images whose hashes differ in at most NEAR_BITS bits are near
  duplicates (candidates from four 16-bit bands);
- texts: MinHash over word 3-gram shingles, with datasketch's LSH at Jaccard ≥ 0.8.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

NEAR_BITS = 4
TEXT_THRESHOLD = 0.8
SHINGLE = 3


def row_keys(frame: pd.DataFrame, near: bool = False) -> np.ndarray:
    """One 64-bit hash per row."""
    if near:
        frame = frame.copy()
        for c in frame.columns:
            if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]):
                values = frame[c].to_numpy(dtype=float)
                with np.errstate(all="ignore"):
                    scale = 10 ** (np.floor(np.log10(np.abs(values) + 1e-300)) - 2)
                frame[c] = np.where(np.isfinite(values), np.round(values / scale) * scale, np.nan)
            elif frame[c].dtype == object:
                frame[c] = frame[c].astype(str).str.strip().str.lower()
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def image_keys(images: np.ndarray, batch: int = 4096) -> np.ndarray:
    """pHash of (n, height, width[, channels]) uint8 images, as uint64."""
    import torch
    import torch.nn.functional as F
    from scipy.fft import dctn

    keys = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch])).float()
        x = x.mean(dim=-1) if x.dim() == 4 else x  # greyscale
        small = F.interpolate(x[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0].numpy()
        low = dctn(small, axes=(1, 2), norm="ortho")[:, :8, :8].reshape(len(x), 64)
        bits = low > np.median(low[:, 1:], axis=1, keepdims=True)  # the DC term left out of the median
        keys.append(np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64))
    return np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)


def near_image_pairs(keys: np.ndarray, bits: int = NEAR_BITS) -> list[tuple[int, int]]:
    """Pairs (i < j) of hashes within `bits` bits: any two such share one of four 16-bit bands
    when bits < 4, and most do at 4 (the usual LSH trade)."""
    pairs = set()
    for band in range(4):
        part = (keys >> np.uint64(16 * band)) & np.uint64(0xFFFF)
        order = np.argsort(part, kind="stable")
        bounds = np.flatnonzero(np.diff(part[order])) + 1
        for group in np.split(order, bounds):
            if 1 < len(group) <= 200:  # a huge bucket is blank images: exact hashing reports those
                for a in range(len(group)):
                    for b in range(a + 1, len(group)):
                        i, j = sorted((int(group[a]), int(group[b])))
                        if bin(int(keys[i] ^ keys[j])).count("1") <= bits:
                            pairs.add((i, j))
    return sorted(pairs)


def near_text_pairs(texts: list[str], threshold: float = TEXT_THRESHOLD, num_perm: int = 64) -> list[tuple[int, int]]:
    """Pairs (i < j) of texts whose word-3-gram sets have Jaccard similarity ≥ threshold (MinHash LSH)."""
    from datasketch import MinHash, MinHashLSH

    lsh, hashes = MinHashLSH(threshold=threshold, num_perm=num_perm), []
    for i, text in enumerate(texts):
        words = str(text).lower().split()
        shingles = {" ".join(words[k:k + SHINGLE]) for k in range(max(1, len(words) - SHINGLE + 1))}
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([s.encode("utf-8") for s in shingles])
        hashes.append(m)
        lsh.insert(str(i), m)
    pairs = set()
    for i, m in enumerate(hashes):
        for other in lsh.query(m):
            j = int(other)
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def exact_pairs(keys: np.ndarray) -> list[np.ndarray]:
    """Groups (positions) of two or more equal keys."""
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    return [g for g in np.split(order, bounds) if len(g) > 1]


def duplicate_findings(groups: list, split: np.ndarray, ids: np.ndarray, what: str) -> list[dict]:
    """Findings from groups (or pairs) of duplicate positions: within the training rows, and
    rows of validation/test that repeat a training row (leakage)."""
    findings, within, leaked = [], 0, set()
    for group in groups:
        group = np.asarray(group)
        splits = split[group]
        within += max(0, int((splits == "train").sum()) - 1)
        if (splits == "train").any():
            leaked.update(int(ids[g]) for g in group if split[g] != "train")
        elif len(set(splits)) > 1:  # validation and test share a row
            leaked.update(int(ids[g]) for g in group if split[g] == "test")
    if leaked:
        rows = sorted(leaked)
        findings.append({"check": f"{what} across splits", "severity": "high", "count": len(rows), "rows": rows[:1000],
                         "what": f"{len(rows)} validation/test rows repeat a training row ({what}): their scores are "
                                 "inflated", "do": "drop them from the evaluation rows, or split by a group key"})
    if within:
        findings.append({"check": f"{what} within training", "severity": "low", "count": within, "rows": [],
                         "what": f"{within} training rows repeat another ({what})",
                         "do": "drop them if they are copies, keep them if they are real repeats"})
    return findings
