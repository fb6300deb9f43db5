"""Linear/logistic and MLP models for tables (dense features plus category embeddings)."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from scaletrain.data.text import firsts_in_row, pair_ids, tfidf_weights
from scaletrain.errors import ConfigError
from scaletrain.models.combiners import combiner as combine

TEXT_L2_SCALE = 0.1
MIN_PAIR_ROWS = 2  # a pair of pieces in fewer training rows weighs 0, as scikit-learn's min_df=2 drops it
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def mlp_layers(n_in: int, hidden: list[int], n_out: int, activation: str, dropout: float, norm: str) -> nn.Sequential:
    """Return Linear → norm → activation → dropout blocks, then the output Linear."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(n_in, width))
        if norm == "batch":
            layers.append(nn.BatchNorm1d(width))
        elif norm == "layer":
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        n_in = width
    with warnings.catch_warnings():  # no input columns besides text: the output layer is a bias alone
        warnings.filterwarnings("ignore", "Initializing zero-element tensors")
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class PeriodicNumbers(nn.Module):
    """Embeddings of numeric features, PLR (Gorishniy et al. 2022, "On Embeddings for Numerical
    Features in Tabular Deep Learning"): each of the first `n` input columns x becomes
    ReLU(W [sin 2πcx, cos 2πcx] + b), k trainable frequencies c per column drawn from N(0, σ²),
    W and b per column; the other columns (category embeddings, text) pass as they are. An MLP
    over such features fits the steps and periodic shapes of tabular targets that a plain MLP
    smooths over."""

    def __init__(self, n: int, frequencies: int = 16, dim: int = 16, sigma: float = 0.1):
        super().__init__()
        self.n = n
        self.frequencies = nn.Parameter(torch.randn(n, frequencies) * sigma)
        self.weight = nn.Parameter(torch.randn(n, 2 * frequencies, dim) / (2 * frequencies) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n, dim))
        self.width_added = n * (dim - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numbers, rest = x[:, :self.n], x[:, self.n:]
        angle = 2 * torch.pi * self.frequencies * numbers.unsqueeze(-1)  # (rows, n, k)
        waves = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
        embedded = torch.relu(torch.einsum("rnk,nkd->rnd", waves, self.weight) + self.bias)
        return torch.cat([embedded.flatten(1), rest], dim=1)


class TextBag(nn.Module):
    """fastText's text encoder for the MLP: the TF-IDF-weighted sum of a text's word-piece
    embeddings and the mean of its hashed piece pairs (bigrams carry word order a bag of pieces
    loses), padding ignored. Fast and strong when labels are few; the Transformer is the encoder
    for large data."""

    DIM = 64

    def __init__(self, vocab_size: int, dim: int = DIM):
        super().__init__()
        self.buckets = vocab_size
        self.pieces = nn.EmbeddingBag(vocab_size, dim, mode="sum", padding_idx=0)
        self.pairs = nn.EmbeddingBag(vocab_size + 1, dim, mode="mean", padding_idx=0)
        self.width = 2 * dim

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        pairs = pair_ids(tokens, self.buckets)
        return torch.cat([self.pieces(tokens, per_sample_weights=weights), self.pairs(pairs)], dim=1)


class _SparseProduct(torch.autograd.Function):
    """rows @ weight with the transposed rows given: the gradient is one sparse product."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, rows: torch.Tensor, rows_t: torch.Tensor) -> torch.Tensor:
        ctx.rows_t = rows_t
        return rows @ weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.rows_t @ grad, None, None


class WeightedBag(nn.EmbeddingBag):
    """A weighted bag of pieces times a weight per piece and output (a TF-IDF vector into a linear
    model). Full-batch L-BFGS feeds the same rows to every evaluation: from the second sight of
    them on, they are held as a sparse matrix and its transpose, and the product's gradient is a
    sparse product (12k reviews, 136 pieces, 6 classes: 3 ms a backward pass instead of 150 ms
    through the bag's own). Minibatches, evaluation and export take the bag unchanged."""

    def __init__(self, num: int, dim: int):
        super().__init__(num, dim, mode="sum")
        self._seen: tuple | None = None

    def forward(self, tokens: torch.Tensor, per_sample_weights: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(tokens, per_sample_weights=per_sample_weights)
        seen = self._seen
        if seen is not None and seen[0] is tokens and seen[1] is per_sample_weights:
            if len(seen) == 2:
                self._seen = seen = seen + self._sparse(tokens, per_sample_weights)
            return _SparseProduct.apply(self.weight, seen[2], seen[3])
        self._seen = (tokens, per_sample_weights)
        return super().forward(tokens, per_sample_weights=per_sample_weights)

    def _sparse(self, tokens: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, length = tokens.shape
        index = torch.stack([torch.arange(n, device=tokens.device).repeat_interleave(length), tokens.reshape(-1)])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse")  # CSR is beta in torch; products on it are stable
            rows = torch.sparse_coo_tensor(index, weights.reshape(-1).to(self.weight.dtype), (n, self.num_embeddings))
            rows = rows.coalesce()
            return rows.to_sparse_csr(), rows.t().coalesce().to_sparse_csr()

    def train(self, mode: bool = True):
        if not mode:
            self._seen = None  # the rows are not kept beyond training
        return super().train(mode)


class PiecePairs(nn.Module):
    """A text's hashed pairs of adjacent pieces as a second TF-IDF half beside its pieces (word
    order, and the words the tokenizer splits, that a bag of pieces loses): each half of unit
    norm, both scaled by 1/√2 so that the row's vector has unit norm, as TF-IDF of words and word
    pairs has. The pairs' idf is fitted on the training rows before training (fit_idf; a pair in
    one row only weighs 0) and saved with the weights. Computed from the token ids inside the
    model, so preprocessing, explanations (a word taken out takes its pairs) and the exported
    graph read the pieces alone. Measured: see BENCHMARKS.md, "pairs of pieces"."""

    HALF = 0.5 ** 0.5

    def __init__(self, vocab_size: int, buckets: int):
        super().__init__()
        self.vocab_size, self.buckets = vocab_size, buckets
        self.register_buffer("idf", torch.ones(buckets + 1))
        self._seen: tuple | None = None

    @torch.no_grad()
    def fit_idf(self, tokens: torch.Tensor) -> None:
        ranked = pair_ids(tokens, self.buckets).sort(dim=1).values
        df = torch.bincount(ranked[firsts_in_row(ranked)], minlength=self.buckets + 1).float()  # rows holding each
        idf = torch.log((1 + len(tokens)) / (1 + df)) + 1  # scikit-learn's smooth idf, as the pieces'
        self.idf.copy_(torch.where(df >= MIN_PAIR_ROWS, idf, torch.zeros_like(idf)).to(self.idf.device))

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen = self._seen  # full-batch L-BFGS gives the same rows every time: the same tensors back (WeightedBag)
        if seen is not None and seen[0] is tokens and seen[1] is weights:
            return seen[2], seen[3]
        pairs = pair_ids(tokens, self.buckets)
        ids = torch.cat([tokens, torch.where(pairs > 0, pairs + (self.vocab_size - 1), torch.zeros_like(pairs))], dim=1)
        both = ids, torch.cat([weights, tfidf_weights(pairs, self.idf)], dim=1) * self.HALF
        if self.training and torch.is_grad_enabled():
            self._seen = (tokens, weights) + both
        return both

    def train(self, mode: bool = True):
        if not mode:
            self._seen = None
        return super().train(mode)


class TabularNet(nn.Module):
    """Embeds high-cardinality categories (and free text), concatenates them to dense features,
    runs a body. Free text enters through `text`, a module whose `width` features join the
    others (a TextBag, or a Transformer's pooled state); or, for a linear body, as its TF-IDF
    vector straight into the outputs (a weight per piece and class: exactly TF-IDF + logistic
    regression), with its hashed piece pairs where `pair_buckets` is set (PiecePairs).
    Image columns enter through `pictures` (a Pictures: an encoder each, concatenated beside the
    rest, the combiner of fused inputs); `inputs` reads all, the table's columns alone or the
    images alone (zero-config's single-input candidates)."""

    def __init__(self, n_dense: int, cardinalities: list[int], embedding_dim: int, body_fn,
                 text: nn.Module | None = None, linear_text: tuple[int, int, int] | None = None,
                 pictures: nn.Module | None = None, combiner: str = "concat"):
        super().__init__()
        self.reads_table = pictures is None or not pictures.alone
        self.embeddings = nn.ModuleList(nn.Embedding(c + 1, embedding_dim) for c in cardinalities)
        self.text = text
        self.pictures = pictures
        vocab, n_out, pair_buckets = linear_text or (0, 0, 0)  # pieces, outputs, hashed pairs (0: none)
        self.text_pairs = PiecePairs(vocab, pair_buckets) if linear_text and pair_buckets else None
        self.text_linear = WeightedBag(vocab + (pair_buckets if self.text_pairs else 0), n_out) if linear_text else None
        if self.text_linear is not None:
            nn.init.zeros_(self.text_linear.weight)  # a convex problem: start where the penalty is least
            # A TF-IDF row has unit norm spread over hundreds of pieces (values near 0.05) where
            # a standardized column has unit variance: the same L2 strength is far stronger on
            # it, and on few rows it leaves the (unpenalized) intercept to decide. A tenth of it
            # is the C=10 practitioners give TF-IDF + logistic regression. BBC News with 33
            # labelled articles: accuracy 0.43 at the full strength, 0.79 at a tenth.
            self.text_linear.weight.l2_scale = TEXT_L2_SCALE
        table = [n_dense + embedding_dim * len(cardinalities), text.width if text is not None else 0]
        widths = [w for w in (table if self.reads_table else []) + (pictures.widths if pictures else []) if w]
        if combiner != "concat" and len(widths) < 2:
            raise ConfigError(f"model.combiner={combiner} fuses several inputs (the table's columns, its text, each "
                              "image column); this model reads one: leave it at concat")
        self.combine = combine(combiner, widths)
        self.body = body_fn(self.combine.width)

    def forward(self, dense: torch.Tensor, categories: torch.Tensor | None = None,
                tokens: torch.Tensor | None = None, weights: torch.Tensor | None = None,
                absent: torch.Tensor | None = None, *pixels: torch.Tensor) -> torch.Tensor:
        groups = []
        if self.reads_table:
            groups.append(torch.cat([dense] + [emb(categories[:, i]) for i, emb in enumerate(self.embeddings)], dim=1))
            if self.text is not None:
                groups.append(self.text(tokens, weights))
        if self.pictures is not None:
            groups += self.pictures(absent, pixels)
        out = self.body(self.combine(nonempty(groups)))
        return out if self.text_linear is None or not self.reads_table else out + self.linear_text(tokens, weights)

    def linear_text(self, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The outputs' share from the text's TF-IDF vector (and its pairs'), a weight per piece and class."""
        if self.text_pairs is not None:
            tokens, weights = self.text_pairs(tokens, weights)
        return self.text_linear(tokens, per_sample_weights=weights)

    @torch.no_grad()
    def piece_counts(self, inputs: tuple, y: torch.Tensor, classes: int) -> torch.Tensor | None:
        """(pieces and pairs, classes): the rows of each class whose text holds each piece (or
        pair) of the linear TF-IDF part, each row counted once; None without that part."""
        if self.text_linear is None or len(inputs) < 4:
            return None
        tokens, weights = self.linear_text_ids(inputs[2], inputs[3])
        ranked = torch.where(weights > 0, tokens, torch.zeros_like(tokens)).sort(dim=1).values
        first = firsts_in_row(ranked)
        label = y.long()[:, None].expand_as(ranked)
        pieces = self.text_linear.num_embeddings
        flat = torch.bincount(ranked[first] * classes + label[first], minlength=pieces * classes)
        return flat[:pieces * classes].view(pieces, classes).float()

    def linear_text_ids(self, tokens: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ids and TF-IDF weights the linear part reads: the pieces', and their pairs' where it has them."""
        if self.text_pairs is None:
            return tokens, weights
        return self.text_pairs(tokens, weights)

    def fit_to_rows(self, inputs: tuple) -> None:
        """Fit what is fitted on the training rows before training: the piece pairs' idf."""
        if self.text_pairs is not None and len(inputs) > 2:
            self.text_pairs.fit_idf(inputs[2])


def nonempty(groups: list[torch.Tensor]) -> list[torch.Tensor]:
    """The input groups that have features (a table of text and images alone has no numbers)."""
    kept = [g for g in groups if g.shape[1]]
    return kept or groups[:1]  # no features at all (a linear model of text alone): the body reads none


class Pictures(nn.Module):
    """A table's image columns, each through its own encoder; a row whose image is missing, or
    dropped in training (modality dropout: the share `dropout` of rows, so that the model does
    not lean on one input alone and copes when it is absent), gets the column's learned
    "missing" vector instead. `alone`: the model reads these columns only."""

    def __init__(self, encoders: list[nn.Module], dropout: float, alone: bool = False):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.missing = nn.ParameterList(nn.Parameter(torch.zeros(e.width)) for e in encoders)
        self.dropout, self.alone = dropout, alone
        self.widths = [e.width for e in encoders]

    def forward(self, absent: torch.Tensor, pixels: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        vectors = []
        for i, (encoder, images) in enumerate(zip(self.encoders, pixels)):
            vector = encoder(images)
            gone = absent[:, i:i + 1].to(vector.dtype)
            if self.training and self.dropout > 0:
                gone = torch.maximum(gone, (torch.rand_like(gone) < self.dropout).to(gone.dtype))
            vectors.append(vector * (1 - gone) + self.missing[i] * gone)
        return vectors


class FlatImageNet(nn.Module):
    """Normalizes and flattens images so linear and MLP bodies can take them."""

    def __init__(self, normalize: nn.Module, body: nn.Module):
        super().__init__()
        self.normalize, self.body = normalize, body

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(images).flatten(1))

