"""A recommender run's report.html: the data, the split, every candidate's validation figures,
the test figures beside popularity with their standard errors, and a chart of both."""
from __future__ import annotations

import html

from scaletrain.evaluate.charts import figure_svg, hbar_chart
from scaletrain.evaluate.report import build_page, table_html

SHOWN = ("ndcg", "hr", "recall", "map")


def figures_row(name: str, figures: dict, k: int) -> dict:
    row = {"model": name}
    for metric in SHOWN:
        row[f"{metric.upper()}@{k}"] = f"{figures[f'{metric}@{k}']:.4f} ± {figures[f'{metric}@{k}_se']:.4f}"
    return row | {"coverage": figures["coverage"], "users scored": figures["users_scored"]}


def test_chart(test: dict[str, dict], k: int) -> str:
    """NDCG@k and HR@k on the test items per model, with ±1 standard error."""
    names = list(test)
    panels = [(f"{metric.upper()}@{k} (test, full ranking)", [test[n][f"{metric}@{k}"] for n in names],
               [test[n][f"{metric}@{k}_se"] for n in names]) for metric in ("ndcg", "hr")]
    title = f"Test NDCG@{k} and HR@{k}, ±1 standard error"
    return figure_svg("recommend-test", title, hbar_chart(names, panels, title))


def sampled_note(metrics: dict) -> str:
    sampled, k = metrics.get("test_sampled"), metrics["k"]
    if not sampled:
        return ""
    return (f"<p class='note'>Sampled evaluation would report HR@{k} {sampled[f'hr@{k}']:.4f} and NDCG@{k} "
            f"{sampled[f'ndcg@{k}']:.4f} for {html.escape(metrics['model'])} (each test item among "
            f"{sampled['negatives']} drawn unseen items) against {metrics['test'][f'hr@{k}']:.4f} and "
            f"{metrics['test'][f'ndcg@{k}']:.4f} fully ranked: shown only to say how much sampling flatters.</p>")


def report_html(metrics: dict) -> str:
    k, data = metrics["k"], metrics["data"]
    test = {metrics["model"]: metrics["test"]} | metrics["baselines"]
    summary = [{"what": "interactions", "value": f"{data['interactions']:,}"},
               {"what": "users × items", "value": f"{data['users']:,} × {data['items']:,}"},
               {"what": "roles", "value": ", ".join(f"{r}: {c}" for r, c in data["roles"].items() if c)},
               {"what": "split", "value": data["split"]},
               {"what": "chosen", "value": metrics["model"]}]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in metrics["notes"])
    candidates = [{"candidate": e["name"], f"NDCG@{k}": e["val"][f"ndcg@{k}"], f"HR@{k}": e["val"][f"hr@{k}"],
                   "seconds": e["seconds"]} for e in metrics["candidates"]]
    body = ("<h2>Data</h2>" + table_html(summary) + (f"<ul class='note'>{notes}</ul>" if notes else "")
            + "<h2>Test (every item ranked, seen items excluded)</h2>"
            + table_html([figures_row(n, f, k) for n, f in test.items()]) + test_chart(test, k)
            + sampled_note(metrics)
            + "<h2>Candidates (validation)</h2>" + table_html(candidates))
    return build_page("scaletrain recommender", body)
