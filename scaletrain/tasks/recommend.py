"""Recommendation: users × items interactions to ranked top-k lists. It trains by its own
regime (scaletrain/recommend/), not by rows and a target, so the row-model hooks stay unset."""
from scaletrain.tasks.base import Task

RECOMMEND = Task("recommend", classifies=False, headline="ndcg@10", losses=("bpr",), boosting_objective="",
                 score_label="NDCG@10", regime="scaletrain.recommend.run")
