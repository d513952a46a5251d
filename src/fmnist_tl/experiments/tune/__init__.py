"""`fmnist tune`: a random search, each trial stage 1 scored on the validation split.

search.py (the plan, Keras Tuner's oracle and the loop; `tune` is the API), trial.py (one
trial), leaderboard.py (leaderboard.json / .md and best.yaml, rewritten after every trial).
"""
