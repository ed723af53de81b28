"""MAIL-MART on CIFAR-10, ResNet-18: the MAIL protocol (Wang, Liu et al., NeurIPS 2021; ``mail_loss.py``).

    jaxrobust train --config cifar10_mail_mart --output-dir runs/cifar10_mail_mart

As ``cifar10_mail_at`` with the MART base (only the boosted-CE term is reweighted). The README gives
no slope/bias for MAIL-MART, so these are the paper's (5, 0.05); beta 5 is the code default (the
paper uses 6: ``method.beta=6``). MAIL's tables report MART-PM_adv (Table 1): NAT 84.12,
PGD-100 53.65, AA 47.20.

Expected cost: ~1.5 GPU-hours training on one H100, plus ~0.3 h evaluation.
"""

from jaxrobust.configs.cifar10_mail_at import EPS, resnet18_mail_protocol


def get_config() -> dict:
  return resnet18_mail_protocol(
      {"name": "mail_mart", "eps": EPS, "step_size": 0.007, "steps": 10, "slope": 5.0, "bias": 0.05,
       "beta": 5.0, "norm": "code", "pm": "adv", "burn_in_epochs": 76},
      "runs/cifar10_mail_mart")
