"""Recommendation (`--task recommend`): users × items interactions to ranked top-k lists.

interactions.py reads the table and its roles; scorers.py holds the candidates (popularity,
recency-weighted EASE, BPR matrix factorization); fit.py splits, chooses on validation and
scores on the test items over the full catalogue; recommender.py makes the lists; store.py
writes and checks the run directory; run.py is what the API and the CLI call.
"""
