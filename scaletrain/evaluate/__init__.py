"""Evaluation: metrics (scikit-learn underneath) and the HTML report."""
