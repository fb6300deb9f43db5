"""Binary classification: two classes, one decision threshold tuned on validation rows."""
from scaletrain.tasks.base import Task

BINARY = Task("binary", classifies=True, headline="accuracy", losses=("cross_entropy", "bce"),
              boosting_objective="binary", thresholded=True)
