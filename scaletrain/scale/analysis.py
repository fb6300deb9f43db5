"""From measured cells to what a person wants to know: the law fitted without the largest
cell and checked on it, the law on every cell with bootstrap intervals, the one-axis fits, and
plain sentences — what doubling the data buys, what doubling the model buys, the smallest
model that reaches a loss, the compute-optimal size for a budget."""
from __future__ import annotations

import numpy as np

from scaletrain.fitting.scaling_law import Law, bootstrap, compute_optimal, fit_law, interval, smallest_model


def mean_cells(cells: list[dict]) -> list[dict]:
    """One point per (width, fraction): the seeds' mean loss."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["width"], c["fraction"]), []).append(c)
    return [{"width": w, "fraction": f, "parameters": g[0]["parameters"], "rows": g[0]["rows"],
             "loss": float(np.mean([c["loss"] for c in g])), "loss_sd": float(np.std([c["loss"] for c in g])),
             "seeds": len(g)} for (w, f), g in sorted(groups.items())]


def _arrays(points: list[dict]):
    return (np.array([p["parameters"] for p in points], float), np.array([p["rows"] for p in points], float),
            np.array([p["loss"] for p in points], float))


def analyse(cells: list[dict], rounds: int = 200, seed: int = 0) -> dict:
    """Everything scale.json says about the cells."""
    points = mean_cells(cells)
    largest = max(points, key=lambda p: (p["parameters"], p["rows"]))
    rest = [p for p in points if p is not largest]
    before = fit_law(*_arrays(rest))
    predicted = float(before.loss(largest["parameters"], largest["rows"]))
    held = {"width": largest["width"], "fraction": largest["fraction"], "parameters": largest["parameters"],
            "rows": largest["rows"], "predicted": predicted, "measured": largest["loss"],
            "error": (predicted - largest["loss"]) / largest["loss"], "law_without_it": before.as_dict()}
    n, d, loss = _arrays(points)
    law = fit_law(n, d, loss)
    laws = bootstrap(n, d, loss, law, rounds, seed)
    intervals = {k: interval([getattr(b, k) for b in laws]) for k in ("E", "A", "alpha", "B", "beta")}
    return {"points": points, "held_out": held, "law": law.as_dict(), "intervals": intervals,
            "bootstrap_rounds": len(laws), "one_axis": one_axis(points),
            "answers": answers(law, laws, largest)}


def one_axis(points: list[dict]) -> dict:
    """Loss against rows at the largest model, and against parameters with all the rows."""
    top_n = max(p["parameters"] for p in points)
    top_d = max(p["rows"] for p in points)
    at_n = [p for p in points if p["parameters"] == top_n]
    at_d = [p for p in points if p["rows"] == top_d]
    out = {}
    if len(at_n) >= 3:
        n, d, loss = _arrays(at_n)
        law = fit_law(n, d, loss, terms=("d",))
        out["loss_vs_rows"] = {"parameters": top_n, "E": law.E, "B": law.B, "beta": law.beta}
    if len(at_d) >= 3:
        n, d, loss = _arrays(at_d)
        law = fit_law(n, d, loss, terms=("n",))
        out["loss_vs_parameters"] = {"rows": top_d, "E": law.E, "A": law.A, "alpha": law.alpha}
    return out


def answers(law: Law, laws: list[Law], largest: dict) -> dict:
    """The sentences' numbers, each with its bootstrap interval, at the largest measured cell."""
    n, d = largest["parameters"], largest["rows"]

    def gain(f) -> dict:  # JSON has no inf: a size out of reach (no model gets there) is None
        value = f(law)
        return {"value": value if np.isfinite(value) else None, "interval": interval([f(b) for b in laws])}

    fitted = float(law.loss(n, d))
    target = fitted + 0.1 * (fitted - law.E)  # within 10% of the largest cell's reducible loss
    compute = float(n) * float(d)
    return {
        "at": {"parameters": n, "rows": d, "loss": fitted},
        "double_data": gain(lambda b: float(1 - b.loss(n, 2 * d) / b.loss(n, d))),
        "double_model": gain(lambda b: float(1 - b.loss(2 * n, d) / b.loss(n, d))),
        "smallest_model": {"loss": target, "rows": d, **gain(lambda b: smallest_model(b, target, d))},
        "compute_optimal": {"compute": compute, "parameters": gain(lambda b: compute_optimal(b, compute)[0]),
                            "rows": gain(lambda b: compute_optimal(b, compute)[1])},
        "irreducible_loss": gain(lambda b: b.E),
    }


def sentences(study: dict) -> list[str]:
    """What the numbers say, in words (95% bootstrap intervals in brackets)."""
    a, held = study["answers"], study["held_out"]

    def pct(x: dict) -> str:
        lo, hi = x["interval"]
        if x["value"] is None or lo is None:
            return "an unknown share" if x["value"] is None else f"{100 * x['value']:.2f}%"
        return f"{100 * x['value']:.2f}% [{100 * lo:.2f}%, {100 * hi:.2f}%]"

    def num(x: dict) -> str:
        lo, hi = x["interval"]
        if x["value"] is None:
            return "no number of (out of reach by the law)"
        return f"{x['value']:,.0f} [{lo:,.0f}, {hi:,.0f}]" if lo is not None else f"{x['value']:,.0f}"

    def between(name: str) -> str:
        lo, hi = study["intervals"][name]
        return f"[{lo:.3f}, {hi:.3f}]" if lo is not None else "[no bootstrap interval]"

    at = a["at"]
    unit = study.get("unit", "rows")  # tokens for a corpus
    return [line.replace(" rows", f" {unit}") for line in [
        f"Fitted without it, the law predicted the largest cell ({held['parameters']:,} parameters, {held['rows']:,} rows) "
        f"at loss {held['predicted']:.4f}; it measured {held['measured']:.4f} ({100 * held['error']:+.1f}%).",
        f"L(N, D) = {study['law']['E']:.3g} + {study['law']['A']:.3g}/N^{study['law']['alpha']:.3f} + "
        f"{study['law']['B']:.3g}/D^{study['law']['beta']:.3f} (α in {between('alpha')}, β in {between('beta')}).",
        f"At {at['parameters']:,} parameters and {at['rows']:,} rows, twice the data lowers the loss by "
        f"{pct(a['double_data'])}; a model twice as large lowers it by {pct(a['double_model'])}.",
        f"The smallest model reaching loss {a['smallest_model']['loss']:.4f} (within 10% of the largest cell's loss above "
        f"the irreducible {study['law']['E']:.4f}) with {a['smallest_model']['rows']:,} rows has "
        f"{num(a['smallest_model'])} parameters.",
        f"For the largest cell's compute (parameters × rows = {a['compute_optimal']['compute']:.3g}), the compute-optimal "
        f"split is {num(a['compute_optimal']['parameters'])} parameters on {num(a['compute_optimal']['rows'])} rows.",
    ]]
