"""UDR on MNIST, SmallCNN: UDR Table 1's MNIST protocol (Bui et al., ICLR 2022).

    jaxrobust train --config mnist_udr --output-dir runs/mnist_udr_trades
    jaxrobust train --config mnist_udr --method udr_pgd method.beta=1.0 --output-dir runs/mnist_udr_pgd
    jaxrobust train --config mnist_udr --method udr_mart method.beta=1.0 --output-dir runs/mnist_udr_mart

beta is 1 for every method on MNIST (``--method`` resets it to the CIFAR default, hence the
override). SmallCNN (conv32-conv32-pool-conv64-conv64-pool, fc200-fc200), SGD lr 0.01, momentum
0.9, no weight decay, batch 128, 100 epochs, lr x0.1 at epochs 55, 75, 90; craft: 40 sign steps
of 0.01 from x + U(-0.3, 0.3) with the soft-ball pull (tau = alpha), eps 0.3; lambda from 1.0,
lr 0.02, every 10 batches. Evaluation as ``mnist_trades`` (FGSM, PGD-20/40/200, CW-Linf, AA).
UDR Table 1 (MNIST): UDR-PGD 99.5 / PGD 94.3 / AA 90.0; UDR-TRADES 99.4 / 96.9 / 92.2;
UDR-MART 99.3 / 96.0 / 92.3.

Expected cost: ~0.5 GPU-hours training on one H100, a few minutes of evaluation; an estimate.
"""

from jaxrobust.configs.mnist_trades import EPS, STEP, get_config as trades_config


def get_config() -> dict:
  cfg = trades_config()
  cfg["output_dir"] = "runs/mnist_udr"
  cfg["model"] = {"name": "small_cnn", "head": "linear", "channels": (32, 64), "hidden": 200}
  cfg["method"] = {"name": "udr_trades", "eps": EPS, "step_size": STEP, "steps": 40, "beta": 1.0,
                   "lam_init": 1.0, "lam_lr": 0.02, "lam_period": 10}
  return cfg
