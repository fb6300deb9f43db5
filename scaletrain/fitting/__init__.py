"""One complete fit: the recipe, candidates, folds, cross-validation, the size probe and the
scaling law it fits, and the pipeline that runs them into a run directory."""
