"""UDR on CIFAR-100, ResNet-18: UDR Table 1's CIFAR-100 protocol (Bui et al., ICLR 2022).

    jaxrobust train --config cifar100_udr --output-dir runs/cifar100_udr_trades
    jaxrobust train --config cifar100_udr --method udr_pgd --output-dir runs/cifar100_udr_pgd
    jaxrobust evaluate --run-dir runs/cifar100_udr_trades --protocol udr_cifar100

As ``cifar10_udr`` (UDR-TRADES, beta 6; SGD lr 0.01, wd 3.5e-3, 200 epochs) with the paper's CIFAR-100
budget: eps 0.01, step 0.001, 10 steps for the craft; PGD-200 (step 0.001) and AutoAttack at eps 0.01
for the evaluation. UDR Table 1 (C100): UDR-PGD 73.5 / PGD 45.1 / AA 41.9; UDR-TRADES 69.6 / 49.9 / 47.8;
UDR-MART 67.5 / 52.0 / 48.5. No UDR code exists for CIFAR-100: the losses follow the paper, the craft the
CIFAR-10 WRN code.

Expected cost: as ``cifar10_udr`` (~2.5 GPU-hours on one H100); an estimate.
"""

from jaxrobust.configs.cifar10_udr import get_config as cifar10_config, udr_eval_attacks

EPS = 0.01
STEP = 0.001


def get_config() -> dict:
  cfg = cifar10_config()
  cfg["output_dir"] = "runs/cifar100_udr"
  cfg["data"]["name"] = "cifar100"
  cfg["method"].update(eps=EPS, step_size=STEP)
  cfg["eval"]["attacks"] = udr_eval_attacks(EPS, STEP)
  return cfg
