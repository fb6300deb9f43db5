"""Binary classification: two classes, one decision threshold tuned on validation rows."""
from scaletrain.tasks.classification import Classification

BINARY = Classification("binary", classifies=True, headline="accuracy", losses=("cross_entropy", "bce"),
              boosting_objective="binary", thresholded=True, score_label="accuracy")
