"""GAIRAT (Zhang et al. 2021) on CIFAR-10: ``zjfheart/...`` ``GAIRAT.py`` with ``--net resnet18``.

    jaxrobust train --config cifar10_gairat --output-dir runs/cifar10_gairat

The script's defaults (120 epochs, so its "Wide-ResNet" branches apply): SGD lr 0.1, momentum 0.9,
wd 2e-4, batch 128, lr /10 from (1-indexed) epoch 60, /100 from 90, /200 from 110; GA-PGD-10,
eps 0.031, step 0.007, uniform start; Tanh GAIR weights with Lambda -1 ('fixed' schedule) from
epoch 60, uniform weights before. ResNet-18 rather than the paper's WRN-32-10 so that it compares
with the ResNet-18 rows of MAIL Table 2 (GAIRAT 83.22 / PGD 54.81 / APGD 50.95 / CW 39.86 / AA 33.35)
and SPAT Table 6 (83.14 / PGD-20 54.85 / PGD-100 52.68 / CW 40.73 / AA 35.90). The paper's net:
``model.name=wrn32_10``.
The lr goes 0.1 -> 0.01 -> 0.001 -> 0.0005 as in the script (per-boundary factors 0.1, 0.1, 0.5).
Evaluation: MAIL's (PGD-20/100 step 0.003, CW-Linf, APGD-CE, AutoAttack standard).

Expected cost: ~1.3 GPU-hours training on one H100 (ResNet-18), ~9 h with WRN-32-10, plus ~0.3 h
evaluation; an estimate.
"""

from jaxrobust.configs.cifar10_mail_at import resnet18_mail_protocol

EPS = 0.031


def get_config() -> dict:
  cfg = resnet18_mail_protocol(
      {"name": "gairat", "eps": EPS, "step_size": 0.007, "steps": 10, "lam": -1.0, "weight_fn": "tanh",
       "lambda_schedule": "fixed", "begin_epoch": 60, "lambda_begin_epoch": 60, "epochs": 120},
      "runs/cifar10_gairat")
  # lr_schedule(epoch + 1): t / 120 < 0.5, 0.75, 11/12 -> changes at 0-indexed epochs 59, 89, 109.
  cfg["optim"].update(lr=0.1, weight_decay=2e-4, boundaries=(59, 89, 109), decay=(0.1, 0.1, 0.5))
  return cfg
