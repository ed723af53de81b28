"""ADV-EN (the CCE paper's baseline, Bui et al. 2021, AAAI) on CIFAR-10: every member
trained on the ensemble's PGD example, L = sum_n [C(f^n(x), y) + C(f^n(x_a^en), y)].

    jaxrobust train --config cifar10_adv_en --output-dir runs/cifar10_adv_en

The protocol, members, training attack and evaluation are ``cifar10_cce``'s (two ResNet-20 members until the
CCE CNN lands).
Reference numbers (Table 3, ResNet-20, N = 2: Nat / PGD-250 / AA): 85.3 / 42.8 / 18.5.

Expected cost: ~4 GPU-hours training on one H100 (the thesis: 205 s per epoch on a Titan RTX), ~30 minutes of
evaluation; an estimate.
"""

from jaxrobust.configs.cifar10_cce import cce_protocol_config


def get_config() -> dict:
  return cce_protocol_config({"name": "adv_en"}, "runs/cifar10_adv_en")
