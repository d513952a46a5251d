"""Experiments made of runs, each of one shape: plan -> run each -> summarise.

repeat.py (one config, several seeds), sweep/ (a grid of values x seeds) and tune/ (a random
search scored on stage 1), sharing seeds.py and folders.py; ktdist.py (its workers) and
ktchief.py (its chief) are Keras Tuner's distributed mode that sweep and tune run on across
machines.
"""
