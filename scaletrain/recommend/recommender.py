"""A fitted recommender with the histories it recommends from: top-k lists over the whole
catalogue for known users (their seen items excluded), popular items for users it has never
seen, and the past items behind each recommendation."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from scaletrain.evaluate.ranking import top_k_scored
from scaletrain.recommend.interactions import id_key, recency_weights
from scaletrain.recommend.scorers import Scorer

REASONS = 3  # past items named per recommendation by `explain`


@dataclass
class Recommender:
    scorer: Scorer
    indptr: np.ndarray            # each user's history (CSR rows, oldest first)
    indices: np.ndarray
    user_ids: list
    item_ids: list
    _user_index: dict = field(default=None, repr=False)
    _recency: np.ndarray = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_indices(self, ids) -> np.ndarray:
        """Indices of user ids (-1 for a user the model has not seen)."""
        if self._user_index is None:
            self._user_index = {id_key(u): i for i, u in enumerate(self.user_ids)}
        return np.array([self._user_index.get(id_key(u), -1) for u in ids], dtype=np.int64)

    def history_rows(self, users: np.ndarray) -> torch.Tensor:
        """(len(users), items) history weights (zero rows for unknown users)."""
        if self._recency is None:
            self._recency = recency_weights(self.indptr, self.scorer.half_life)
        weights = self._recency
        dense = torch.zeros((len(users), self.n_items))
        for row, user in enumerate(users):
            if user >= 0:
                start, end = self.indptr[user], self.indptr[user + 1]
                dense[row, torch.from_numpy(self.indices[start:end].astype(np.int64))] = torch.from_numpy(weights[start:end])
        return dense

    def scores(self, users: np.ndarray) -> torch.Tensor:
        """(len(users), items) scores; a user without history gets the popularity scores, unless the
        model knows the user by their features (a users side table)."""
        history = self.history_rows(users)
        found = self.scorer.scores(history, torch.from_numpy(users)).float()
        cold = torch.from_numpy(users < 0) | ((history.sum(1) == 0) & (not self.scorer.knows_users_by_features))
        return torch.where(cold[:, None], self.scorer.weights["popularity"].float(), found)

    def top(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores), each (len(users), k): the best unseen items first; -1 and NaN past the end."""
        empty = len(self.indptr) - 1  # an unknown user (-1) reads this empty history row
        seen = (np.r_[self.indptr, self.indptr[-1]], self.indices)
        rows = np.where(users < 0, empty, users)
        return top_k_scored(lambda part: self.scores(np.where(part == empty, -1, part)), rows, seen, self.n_items, k)

    def recommend(self, ids, k: int) -> pd.DataFrame:
        """Rows user, rank, item, score (k per user, fewer where the catalogue runs out) and
        `known` (False: a user not in the training data, given popular items)."""
        ids = list(ids)
        users = self.user_indices(ids)
        lists, values = self.top(users, k)
        user_col = np.repeat(np.array(ids, dtype=object), k)
        frame = pd.DataFrame({"user": user_col, "rank": np.tile(np.arange(1, k + 1), len(ids)),
                              "item": [self.item_ids[i] if i >= 0 else None for i in lists.ravel()],
                              "score": values.ravel(), "known": np.repeat(users >= 0, k)})
        return frame[lists.ravel() >= 0].reset_index(drop=True)

    def reasons(self, user: int, item: int, n: int = REASONS) -> list[tuple[object, float]]:
        """The user's past items that add most to `item`'s score, with what each adds."""
        if user < 0:
            return []
        support = self.scorer.support(self.history_rows(np.array([user]))[0], item)
        best = torch.argsort(support, descending=True, stable=True)[:n]
        return [(self.item_ids[int(j)], float(support[j])) for j in best if support[j] > 0]

    def explain(self, ids, k: int, n: int = REASONS) -> pd.DataFrame:
        """`recommend`'s rows with `because_1..n` (past items) and `support_1..n` (what each adds)."""
        frame = self.recommend(ids, k)
        index = {id_key(item): i for i, item in enumerate(self.item_ids)}
        found = [self.reasons(int(user), index[id_key(item)], n)
                 for user, item in zip(self.user_indices(frame["user"]), frame["item"])]
        for j in range(n):
            frame[f"because_{j + 1}"] = [r[j][0] if j < len(r) else None for r in found]
            frame[f"support_{j + 1}"] = [r[j][1] if j < len(r) else None for r in found]
        return frame
