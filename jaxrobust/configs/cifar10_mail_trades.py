"""MAIL-TRADES on CIFAR-10, ResNet-18: the MAIL protocol (Wang, Liu et al., NeurIPS 2021, eq. 10).

    jaxrobust train --config cifar10_mail_trades --output-dir runs/cifar10_mail_trades

As ``cifar10_mail_at`` (SGD 0.01, wd 3.5e-3, 120 epochs, x0.1 at 75/90/100, burn-in to epoch 75)
with the TRADES base: the attack maximises KL(p(x) || p(x')), beta 5 (code ``--beta``), slope/bias
from the authors' README (2, 0; paper: 5 / 0.05). Evaluation: MAIL's (PGD-20/100, CW-Linf, APGD-CE,
AA at eps 0.031). Paper Table 2: NAT 81.84, PGD-100 53.68, APGD 52.92, CW 52.89, AA 50.03.

Expected cost: ~1.5 GPU-hours training on one H100 (one more clean forward per step than MAIL-AT),
plus ~0.3 h evaluation.
"""

from jaxrobust.configs.cifar10_mail_at import EPS, resnet18_mail_protocol


def get_config() -> dict:
  return resnet18_mail_protocol(
      {"name": "mail_trades", "eps": EPS, "step_size": 0.007, "steps": 10, "slope": 2.0, "bias": 0.0,
       "beta": 5.0, "norm": "code", "pm": "adv", "burn_in_epochs": 76},
      "runs/cifar10_mail_trades")
