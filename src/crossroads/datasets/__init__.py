"""Datasets: rows built from the request log or uploaded, exported for fine-tuning.

`rows` turns a logged exchange into a training row, `splits` assigns train/test, `pruning`
strips named strings from rows (and from requests to a model trained without them),
`export` streams rows as the training formats and `formats` checks lines against them.
"""
