"""Evaluation: MER metrics (`metrics`), leak-free reports (`report`) and their plots (`plots`).

Metrics are computed once on the out-of-fold predictions of all LOSO folds pooled,
per seed, then reported as mean and std over seeds; see `report` for the policy.
"""
