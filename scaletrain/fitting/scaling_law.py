"""The scaling law L(N, D) = E + A/N^α + B/D^β, fitted as Hoffmann et al. (2022) fit theirs
(Approach 3): the Huber loss (δ = 1e-3) of log L against log-sum-exp(a − α log N, b − β log D, e),
minimized by L-BFGS (scipy) from a grid of starts, the best kept. Intervals come from a
bootstrap over cells, as Besiroglu et al. (2024) recommend (the original intervals were too
narrow). The one-axis forms L(D) = E + B/D^β and L(N) = E + A/N^α are the same fit with one
term. Nothing here knows about training: cells are (N, D, loss) numbers.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

DELTA = 1e-3
# starts (log E, log A, α, log B, β): 72, fewer than Hoffmann's thousands; with the exact
# gradient each is a few ms, and on synthetic cells all good starts agree to 1e-6
GRID = {"e": (-1.0, 0.5), "a": (0.0, 5.0, 10.0), "b": (0.0, 5.0, 10.0), "alpha": (0.2, 0.6), "beta": (0.2, 0.6)}


@dataclass
class Law:
    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def loss(self, n, d) -> np.ndarray:
        n, d = np.asarray(n, float), np.asarray(d, float)
        return self.E + self.A / n ** self.alpha + self.B / d ** self.beta

    def as_dict(self) -> dict:
        return asdict(self)


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
               terms: tuple) -> tuple[float, np.ndarray]:
    """The Huber loss and its gradient (softmax weights of the log-sum-exp times the clipped residual)."""
    e, a, alpha, b, beta = theta
    minus = -np.inf * np.ones_like(log_l)
    parts = np.stack([np.full_like(log_l, e), a - alpha * log_n if "n" in terms else minus,
                      b - beta * log_d if "d" in terms else minus])
    total = logsumexp(parts, axis=0)
    residual = total - log_l
    weights = np.exp(parts - total) * np.clip(residual, -DELTA, DELTA)
    grad = np.array([weights[0].sum(), weights[1].sum(), -(weights[1] * log_n).sum(), weights[2].sum(),
                     -(weights[2] * log_d).sum()])
    return float(huber(DELTA, residual).sum()), grad


def fit_law(n, d, loss, terms: tuple = ("n", "d"), starts: list | None = None) -> Law:
    """The law through cells (n, d, loss) with the smallest Huber loss over the starts; a term
    left out of `terms` is held at 0 (A = 0 or B = 0)."""
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    if np.any(loss <= 0) or np.any(n <= 0) or np.any(d <= 0):
        raise ValueError("scaling cells need positive sizes and losses")
    args = (np.log(n), np.log(d), np.log(loss), terms)
    if starts is None:
        starts = [np.array(s, float) for s in itertools.product(GRID["e"], GRID["a"], GRID["alpha"], GRID["b"], GRID["beta"])]
        if "n" not in terms:
            starts = list({(s[0], 0, 0, s[3], s[4]): s for s in starts}.values())
        if "d" not in terms:
            starts = list({(s[0], s[1], s[2], 0, 0): s for s in starts}.values())
    bounds = [(-10, 5), (-10, 30), (0.0, 3.0), (-10, 30), (0.0, 3.0)]
    best = None
    for start in starts:
        found = minimize(_objective, start, args=args, jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or found.fun < best.fun:
            best = found
    e, a, alpha, b, beta = best.x
    return Law(float(np.exp(e)), float(np.exp(a)) if "n" in terms else 0.0, float(alpha) if "n" in terms else 0.0,
               float(np.exp(b)) if "d" in terms else 0.0, float(beta) if "d" in terms else 0.0)


def _theta(law: Law) -> np.ndarray:
    return np.array([np.log(law.E), np.log(max(law.A, 1e-300)), law.alpha, np.log(max(law.B, 1e-300)), law.beta])


def bootstrap(n, d, loss, law: Law, rounds: int = 200, seed: int = 0, terms: tuple = ("n", "d")) -> list[Law]:
    """Laws refitted on cells drawn with replacement (started from the full fit and a few
    other starts: the refits are near it)."""
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    rng, laws = np.random.default_rng(seed), []
    base = _theta(law)
    starts = [base, base + np.array([0.3, 0.5, 0.1, 0.5, 0.1]), base - np.array([0.3, 0.5, 0.1, 0.5, 0.1])]
    for _ in range(rounds):
        pick = rng.integers(0, len(n), len(n))
        if len(np.unique(n[pick])) < 2 and "n" in terms or len(np.unique(d[pick])) < 2 and "d" in terms:
            continue  # a draw that cannot separate the terms
        laws.append(fit_law(n[pick], d[pick], loss[pick], terms, [np.clip(s, -10, 30) for s in starts]))
    return laws


def interval(values, level: float = 0.95) -> list[float]:
    """The central `level` interval of bootstrap values."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if not len(values):
        return [None, None]  # JSON has no NaN
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]


def compute_optimal(law: Law, compute: float) -> tuple[float, float]:
    """(N, D) minimizing L(N, D) with N·D = compute (training cost ∝ parameters × rows seen):
    N = G·C^(β/(α+β)), G = (αA / (βB))^(1/(α+β))."""
    if law.alpha <= 0 or law.beta <= 0:
        return float("nan"), float("nan")
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / (law.alpha + law.beta))
    n = g * compute ** (law.beta / (law.alpha + law.beta))
    if not np.isfinite(n) or n <= 0:  # a term so small the split under- or overflows: no optimum to state
        return float("nan"), float("nan")
    return float(n), float(compute / n)


def smallest_model(law: Law, target: float, d: float) -> float:
    """The fewest parameters reaching loss `target` with `d` rows (inf where no size does)."""
    room = target - law.E - law.B / d ** law.beta
    if room <= 0 or law.alpha <= 0:
        return float("inf")
    return float((law.A / room) ** (1 / law.alpha))
