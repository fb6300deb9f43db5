"""Multiclass classification: one of three or more classes; class shifts instead of a threshold."""
from scaletrain.tasks.classification import Classification

MULTICLASS = Classification("multiclass", classifies=True, headline="accuracy", losses=("cross_entropy",),
                  boosting_objective="multiclass", score_label="accuracy")
