"""The analyst's questions: which input drives a metric, and which shock reaches a target.

- `outcomes`: per-path outcomes of a scenario and the metrics, with paired (common random
  numbers) standard errors of differences.
- `sensitivities`: bump-and-revalue central differences, run as one resumable batch.
- `reverse_stress`: the smallest shock along named fields that reaches a target, by brentq.
"""
