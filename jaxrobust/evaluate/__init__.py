"""Robust evaluation: clean/robust accuracy, robust AP, gradient-masking checks, reports."""

from jaxrobust.evaluate.robust import RobustEvaluator, evaluate, format_table, robust_accuracy_curve

__all__ = ["RobustEvaluator", "evaluate", "format_table", "robust_accuracy_curve"]
