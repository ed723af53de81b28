"""ADP_{2,0.5} (Pang et al. 2019, ICML, adaptive diversity promoting; the CCE paper's baseline) on CIFAR-10,
adversarially trained on the ensemble's PGD example:
L = sum_{z in {x, x_a^en}} [sum_n C(f^n(z), y) - 2 H(f^en(z)) - 0.5 log det(M~^T M~ + 1e-6 I)].

    jaxrobust train --config cifar10_adp --output-dir runs/cifar10_adp

The protocol, members, training attack (with ResNet members the ADP setting: eps ~ U(0.01, 0.05) per batch, step
eps / 10) and evaluation are ``cifar10_cce``'s (two ResNet-20 members until the CCE CNN lands).
Reference numbers (Table 3, ResNet-20, N = 2: Nat / PGD-250 / AA): 85.3 / 44.2 / 17.3.

Expected cost: ~4 GPU-hours training on one H100 (the thesis: 210 s per epoch on a Titan RTX), ~30 minutes of
evaluation; an estimate.
"""

from jaxrobust.configs.cifar10_cce import cce_protocol_config


def get_config() -> dict:
  return cce_protocol_config({"name": "adp", "alpha": 2.0, "beta": 0.5}, "runs/cifar10_adp")
