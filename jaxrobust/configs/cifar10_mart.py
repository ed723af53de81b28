"""MART (Wang et al. 2020) on CIFAR-10, ResNet-18: ``YisenWang/MART`` ``train_resnet.py``.

    jaxrobust train --config cifar10_mart --output-dir runs/cifar10_mart

SGD lr 0.01, momentum 0.9, wd 3.5e-3, batch 128, 120 epochs, lr x0.1 / x0.01 / x0.001 from
(1-indexed) epochs 75, 90, 100; attack: 10 CE steps of 0.007 from x + 0.001 N(0, I), eps 0.031;
beta 5 (the ResNet script's; WRN uses 6). Evaluation: FGSM, PGD-20 (step 0.003, uniform start, as
the script's ``_pgd_whitebox``), CW-Linf, AutoAttack standard.
Paper tables: MAIL Table 2 MART 82.28 / PGD 53.50 / APGD 52.73 / CW 51.59 / AA 48.40; SPAT
Table 6 83.08 / FGSM 60.19 / PGD-20 54.87 / CW 51.23 / AA 47.87; UDR Table 1 81.9 / 53.3 / AA 48.2.

Expected cost: ~1.4 GPU-hours training on one H100, plus ~0.3 h evaluation; an estimate.
"""

from jaxrobust.configs.cifar10_mail_at import resnet18_mail_protocol

EPS = 0.031


def get_config() -> dict:
  cfg = resnet18_mail_protocol(
      {"name": "mart", "eps": EPS, "step_size": 0.007, "steps": 10, "beta": 5.0},
      "runs/cifar10_mart")
  # train_resnet.py tests 1-indexed epochs (epoch >= 75 / 90 / 100): 0-indexed 74, 89, 99.
  cfg["optim"]["boundaries"] = (74, 89, 99)
  cfg["eval"]["attacks"] = [
      {"name": "fgsm", "label": "FGSM", "eps": EPS},
      {"name": "pgd", "label": "PGD-20", "eps": EPS, "steps": 20, "step_size": 0.003, "init": "uniform"},
      {"name": "cw_linf", "label": "CW-Linf", "eps": EPS, "steps": 20, "step_size": 0.003, "kappa": 50.0},
      {"name": "autoattack", "label": "AA", "eps": EPS, "version": "standard"},
  ]
  return cfg
