"""A recommender run: train it into a run directory, load it back, ask it for top-k lists."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaletrain.config import Config
from scaletrain.errors import DataError
from scaletrain.recommend import store
from scaletrain.recommend.recommender import REASONS, Recommender

MAX_K = 1_000  # the longest list one user may ask for


@dataclass
class RecommenderRun:
    recommender: Recommender
    config: Config
    metrics: dict
    path: Path | None = None

    @property
    def task(self) -> str:
        return "recommend"

    @property
    def user_column(self) -> str:
        return (self.metrics.get("data", {}).get("roles") or {}).get("user") or "user"

    @classmethod
    def load(cls, path: str | Path) -> "RecommenderRun":
        recommender, config, metrics = store.load(path)
        return cls(recommender, config.frozen(), metrics, Path(path))

    def users_of(self, data) -> list:
        """The user ids of a table (its user column: the trained one's name, `user`, or its only
        column), a list of ids, or one id."""
        if isinstance(data, (list, tuple)):
            return list(data)
        if isinstance(data, (str, Path)) and Path(data).exists():
            data = self._table(data)
        elif isinstance(data, Path) or (isinstance(data, str) and re.search(r"\.(csv|tsv|parquet|pq|jsonl?|ndjson)$", data)):
            raise DataError(f"'{data}' does not exist; give a table of users (or one user id)")
        if not isinstance(data, pd.DataFrame):
            return [data]
        for column in (self.user_column, "user"):
            if column in data.columns:
                return data[column].dropna().tolist()
        if len(data.columns) == 1:
            return data.iloc[:, 0].dropna().tolist()
        raise DataError(f"no user column in the table ({', '.join(map(str, data.columns[:10]))}): name it "
                        f"'{self.user_column}' or 'user', or give one column")

    def predict(self, data, k: int = 10, strict: bool = False, reasons: int = 0) -> pd.DataFrame:
        """Each user's top-k unseen items with scores: rows user, rank, item, score, known (False:
        a user the run never saw, given popular items; with `strict`, refused), and with
        `reasons` the past items that support each recommendation most (because_i, support_i)."""
        users = self.users_of(data)
        unknown = [u for u, i in zip(users, self.recommender.user_indices(users)) if i < 0]
        if strict and unknown:
            raise DataError(f"{len(unknown):,} user(s) the run was not trained on (first: {unknown[0]!r}); without "
                            "--strict they get the most popular items")
        if reasons:
            frame = self.recommender.explain(users, check_k(k), reasons)
        else:
            frame = self.recommender.recommend(users, check_k(k))
        frame.attrs["warnings"] = [f"{len(unknown):,} user(s) not in the training data get the most popular items "
                                   f"(first: {unknown[0]!r})"] if unknown else []
        return frame


    def evaluate(self, data, k: int = 10) -> dict:
        """Ranking metrics at k on later interactions (a table with the trained roles): each user's
        items in DATA are what the lists should hold; users the run never saw are left out."""
        import numpy as np

        from scaletrain.evaluate.ranking import ranking_metrics
        from scaletrain.recommend.interactions import id_key

        frame = self._table(data)
        roles = self.metrics.get("data", {}).get("roles") or {}
        missing = [roles.get(r) for r in ("user", "item") if roles.get(r) not in frame.columns]
        if missing:
            raise DataError(f"the table has no column {missing[0]!r}; it needs the trained user and item columns")
        users = self.recommender.user_indices(frame[roles["user"]])
        index = {id_key(item): i for i, item in enumerate(self.recommender.item_ids)}
        items = np.array([index.get(id_key(v), -1) for v in frame[roles["item"]]], dtype=np.int64)
        known = np.unique(users[users >= 0])
        if not len(known):
            raise DataError("no user in the table is one the run was trained on; nothing to evaluate")
        held = [items[(users == u)] for u in known]  # an item outside the catalogue (-1) is a sure miss
        lists, _ = self.recommender.top(known, check_k(k))
        return ranking_metrics(lists, [np.where(h >= 0, h, -2) for h in held], self.recommender.n_items) | {
            "users_not_trained_on": int(len(np.unique(frame[roles["user"]][users < 0])))}

    def explain_to(self, out: Path, data, k: int = 10) -> dict:
        """explanations.csv and explain.html in `out`: each recommendation with the past items behind it."""
        from scaletrain.evaluate.report import build_page, table_html
        from scaletrain.io import write_text

        frame = self.predict(data, k=k, reasons=REASONS)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "explanations.csv", frame.to_csv(index=False))
        shown = frame.head(500).fillna("").to_dict("records")
        write_text(out / "explain.html", build_page("scaletrain: why these recommendations", (
            "<p>Each recommended item with the user's past items that add most to its score "
            f"({self.metrics.get('model')}).</p>" + table_html(shown))))
        return {"rows": len(frame), "headline": f"{frame['user'].nunique()} users, {k} items each, "
                                                f"up to {REASONS} past items behind each"}

    def _table(self, data) -> pd.DataFrame:
        from scaletrain.modalities.table.tables import read_table

        return data if isinstance(data, pd.DataFrame) else read_table(Path(data))


def check_k(k: int) -> int:
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise DataError(f"k={k!r}: ask for 1 to {MAX_K:,} items per user")
    return k


def train(cfg: Config, data, out, verbose: bool = False, overwrite: bool = False, resume: bool = False,
          resume_or_start: bool = False) -> RecommenderRun:
    """Fit a recommender on an interactions table and write its run directory (unless out=None);
    with `resume`, trained candidates continue from their checkpoints in OUT/checkpoints."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from scaletrain.recommend.fit import fit_recommender
    from scaletrain.recommend.report import report_html
    from scaletrain.rundir import RunDir
    from scaletrain.runlock import writing

    bar = Progress(TextColumn("candidates"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"), disable=not verbose)
    task = bar.add_task("", total=None)
    best = {"value": -1.0, "name": ""}

    def progress(done: int, total: int, name: str, value: float) -> None:
        if value > best["value"]:
            best.update(value=value, name=name)
        bar.update(task, completed=done, total=total,
                   description=f"best validation NDCG@10 {best['value']:.4f}: {best['name']}")

    where = data if isinstance(data, (str, Path)) else "the interactions"
    from scaletrain.train.assembly import process_group

    with writing(out, resume or resume_or_start, overwrite, resume_or_start), process_group("cpu") as world, bar:
        checkpoints = None if out is None else Path(out) / "checkpoints"
        recommender, metrics = fit_recommender(cfg, data, str(where), progress, checkpoints,
                                               None if out is None else Path(out))
        if world.active:
            metrics["distributed"] = {"ranks": world.size, "backend": "gloo",
                                      "gradients": "summed across ranks by all-reduce (whole embedding tables)"
                                      } | metrics.get("distributed", {})
        run = RecommenderRun(recommender, cfg, metrics, None if out is None else Path(out))
        if out is not None and world.main:
            store.save(Path(out), cfg, recommender, metrics, metrics["data"]["roles"])
            RunDir(out).write_report(report_html(metrics))
    return run
