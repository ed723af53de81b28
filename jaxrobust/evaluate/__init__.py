"""Evaluation: one batch loop over a split, attacks from the registry, metrics as plug-ins.

``RobustEvaluator`` (``robust.py``) is the evaluator: ``points`` runs the model and every attack spec
(``specs.py``) once over the split, ``evaluate`` reports clean / robust accuracy and, for single-logit
models, clean / robust AP with the plug-ins of ``metrics.py``. ``average_precision.py`` is the robust-AP
protocol of Li, Tong & Yang (2023) on the same loop, ``checks.py`` the gradient-masking checks,
``selection.py`` the one model-selection rule (best score so far, first on ties, NaN never wins),
``latent_divergence.py`` R-DIV (Bui et al. 2021a), the latent-divergence diagnostic, as a function and a
metric plug-in that reads the latents of the same pass, ``min_norm_curve.py`` robust accuracy against eps
from one minimum-norm attack run (spec key ``eps_curve``; a default metric), ``ensemble_metrics.py`` the
ensemble chapter's numbers on member predictions (TA-MOO's A-i / A-Avg / A-All, CCE's transferability
report and entropy-detection AUC; functions, not plug-ins: ``Points`` holds one prediction per attack).
"""

# (The AP function stays jaxrobust.evaluate.metrics.average_precision: exported here under that name it
# would hide the module jaxrobust.evaluate.average_precision.)
from jaxrobust.evaluate.average_precision import APEvaluator, evaluate_ap
from jaxrobust.evaluate.ensemble_metrics import (entropy_detection_auc, plot_transferability, task_success,
                                                 transferability_report)
from jaxrobust.evaluate.latent_divergence import LatentDivergence, RDiv, plot_latent_divergence, r_div
from jaxrobust.evaluate.min_norm_curve import MinNormCurve, min_norms, plot_min_norm_curve, robust_accuracy_at
from jaxrobust.evaluate.metrics import (AdversarialAccuracy, AveragePrecision, CleanAccuracy, Metric, Points,
                                        PositiveRate, RobustAccuracy, TargetedSuccess, WorstCaseAP,
                                        inverted_ranking_ap)
from jaxrobust.evaluate.robust import (DEFAULT_METRICS, RobustEvaluator, evaluate, evaluate_from_config,
                                       format_table, robust_accuracy_curve)
from jaxrobust.evaluate.selection import ScoreLog, improves, select_best
from jaxrobust.evaluate.specs import EVALUATOR_KEYS

__all__ = ["RobustEvaluator", "evaluate", "evaluate_from_config", "format_table", "robust_accuracy_curve",
           "DEFAULT_METRICS", "Metric", "Points", "CleanAccuracy", "RobustAccuracy", "AdversarialAccuracy",
           "TargetedSuccess",
           "AveragePrecision", "WorstCaseAP", "PositiveRate", "APEvaluator", "evaluate_ap", "inverted_ranking_ap",
           "select_best", "improves", "ScoreLog", "EVALUATOR_KEYS", "r_div", "RDiv", "LatentDivergence",
           "plot_latent_divergence", "MinNormCurve", "min_norms", "robust_accuracy_at", "plot_min_norm_curve",
           "task_success", "transferability_report", "entropy_detection_auc", "plot_transferability"]
