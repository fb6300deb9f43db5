"""Word attributions for the free text of a run: each word taken out in turn (Captum's
FeatureAblation), the drop in the explained class's output recorded.

Taking a word out — its pieces' ids set to padding and their TF-IDF weights to 0 — means the
same thing for every text model here: a bag of pieces (TextBag, TF-IDF + linear) loses its
terms, and a Transformer no longer attends to it or pools it. Gradient methods do not: the
Transformer's pooling is a weighted *mean*, so scaling every weight together (IG's path) does
not change its output at all. Words are the tokenizer's own (its word ids, the offsets of each
into the row's text), so the highlighted spans are the original characters.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import torch

from scaletrain.data.text import row_texts, tokenizer_from_json
from scaletrain.run import Run


@dataclass
class WordAttributions:
    text: str
    spans: list[tuple[int, int, float]]  # (start, end, output drop without the word), in text order
    target: int


def has_text(run: Run) -> bool:
    return bool(run.preprocess.get("text"))


def word_attributions(run: Run, frame, rows: int | None = None) -> list[WordAttributions]:
    """Per row of `frame` (its first `rows`), each word's attribution for the predicted class."""
    from captum.attr import FeatureAblation

    text = run.preprocess["text"]
    frame = frame.iloc[:rows] if rows is not None else frame
    texts = row_texts([frame[c].tolist() for c in text["columns"]])
    tokenizer = tokenizer_from_json(text["tokenizer"])
    tokenizer.no_padding()
    tokenizer.enable_truncation(text["length"])
    encodings = tokenizer.encode_batch(texts)
    dense, categories, tokens, weights = run.encode(run.source(frame))[0]
    model = run.model.eval()

    def forward(t, w, d, c):
        return model(d.expand(len(t), -1), c.expand(len(t), -1), t, w)

    ablation, found = FeatureAblation(forward), []
    for i, encoding in enumerate(encodings):
        mask = torch.zeros((1, tokens.shape[1]), dtype=torch.long)  # 0: padding and [CLS]/[SEP], not words
        word_ids = [w for w in encoding.word_ids]
        mask[0, :len(word_ids)] = torch.tensor([0 if w is None else w + 1 for w in word_ids])
        extra = (dense[i:i + 1], categories[i:i + 1])
        with torch.no_grad():
            out = forward(tokens[i:i + 1], weights[i:i + 1], *extra)
        target = 0 if out.shape[1] == 1 else int(out.argmax(dim=1))
        scores = ablation.attribute((tokens[i:i + 1], weights[i:i + 1]), baselines=(0, 0.0), target=target,
                                    additional_forward_args=extra, feature_mask=(mask, mask),
                                    perturbations_per_eval=64)[1][0]
        spans: dict[int, list] = {}
        for position, (word, (start, end)) in enumerate(zip(word_ids, encoding.offsets)):
            if word is not None:
                span = spans.setdefault(word, [start, end, float(scores[position])])
                span[1] = max(span[1], end)
        found.append(WordAttributions(texts[i], [tuple(s) for s in sorted(spans.values())], target))
    return found


def highlighted(words: WordAttributions, limit: int = 1500) -> str:
    """The text as HTML, each word's background red where it pushed towards the explained class
    and blue where against, by its share of the row's largest attribution."""
    top = max((abs(a) for _, _, a in words.spans), default=0.0) or 1.0
    parts, at = [], 0
    for start, end, value in words.spans:
        if start >= limit:
            break
        share = min(1.0, abs(value) / top)
        colour = f"rgba(214,39,40,{share:.2f})" if value > 0 else f"rgba(31,119,180,{share:.2f})"
        parts.append(html.escape(words.text[at:start]))
        parts.append(f"<span class='w' style='background:{colour}' title='{value:+.3g}'>"
                     f"{html.escape(words.text[start:end])}</span>")
        at = end
    tail = words.text[at:limit] + ("…" if len(words.text) > limit else "")
    return "".join(parts) + html.escape(tail)


def top_words(found: list[WordAttributions], k: int = 20) -> dict[str, float]:
    """Over the rows, the words with the largest mean attribution (lower-cased)."""
    totals: dict[str, list[float]] = {}
    for words in found:
        for start, end, value in words.spans:
            totals.setdefault(words.text[start:end].lower(), []).append(value)
    means = {w: float(np.mean(v)) for w, v in totals.items() if len(v) >= 2 or len(found) < 5}
    return dict(sorted(means.items(), key=lambda kv: -abs(kv[1]))[:k])
