"""AdAP paper protocol, CIFAR-100 superclass one-vs-all, tasks 0..9 (Li, Tong, Yang, NeurIPS 2023, Table 6).

Same as ``adap_cifar10`` (ResNet-18 ImageNet stem, Adam 1e-3, wd 2e-4, 60 epochs, x0.1 at 30/45, batch
128 = 64 + 64, PGD 6 x 0.01 at eps 0.031, lambda 0.8, gamma1 0.1, gamma2 0.9) on
``load_dataset('cifar100', label_mode='coarse')``: per superclass 2500 train images -> 2000 train /
500 validation; 5% positives.

    jaxrobust train --config adap_cifar100 data.binary_positive_class=0          # aquatic mammals
    jaxrobust train --config adap_cifar100 method.name=bce output_dir=runs/c100_ce
"""

from jaxrobust.configs.adap_cifar10 import adap_config


def get_config() -> dict:
  return adap_config(name="cifar100", binary_task="coarse", positive_class=0, epochs=60, weight_decay=2e-4,
                     output_dir="runs/adap_cifar100")
