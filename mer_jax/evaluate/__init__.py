"""Evaluation: MER metrics (`metrics`), leak-free reports (`report`) and every figure
(`figures`: the confusion matrix, the curves and what a method's trained models show).

Metrics are computed once on the out-of-fold predictions of all LOSO folds pooled,
per seed, then reported as mean and std over seeds; see `report` for the policy.
"""
