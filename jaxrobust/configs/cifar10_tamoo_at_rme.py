"""TA-MOO adversarial training of the RME ensemble (ResNet-18 + MobileNet + EfficientNet-B0; Bui et al. 2023,
TMLR, Table 4 RME rows): ``cifar10_tamoo_at`` with three different architectures.

    jaxrobust train --config cifar10_tamoo_at_rme --output-dir runs/cifar10_tamoo_at_rme

Paper (RME): PGD-AT 86.52 / 37.36, MinMax-AT 83.16 / 40.40, MOO-AT 82.04 / 37.48, TA-MOO-AT 82.59 / 41.32
(NAT / ADV under PGD-20). EfficientNet-B0's dropout (0.2 before the classifier) is active in train mode, as
kuangliu's. Expected cost: ~5 GPU-hours on one H100 (an estimate, not measured).
"""

from jaxrobust.configs.cifar10_tamoo_at import tamoo_at_config


def get_config() -> dict:
  return tamoo_at_config({"name": "ensemble", "members": ("resnet18", "mobilenet", "efficientnet_b0")},
                         "runs/cifar10_tamoo_at_rme")
