"""TRADES (Zhang et al. 2019) on MNIST, SmallCNN: ``train_trades_mnist.py`` with the UDR/thesis schedule.

    jaxrobust train --config mnist_trades --output-dir runs/mnist_trades

SmallCNN (conv32-conv32-pool-conv64-conv64-pool, fc200-fc200), SGD lr 0.01, momentum 0.9, no weight
decay, batch 128, 100 epochs, lr x0.1 at epochs 55, 75, 90 (the schedule behind UDR Table 1, Bui et al., ICLR 2022);
attack: 40 steps of 0.01 on KL(p(x) || p(x')) from x + 0.001 N(0, I), eps 0.3; beta 1.
The TRADES script itself decays only once: its ``if epoch >= 55 / elif >= 75 / elif >= 90`` never
reaches the later branches, so lr is 0.001 from (1-indexed) epoch 55 on:
``"optim.boundaries=(54,)"``. Its SmallCNN has Dropout(0.5) after fc1, as here
(``model.dropout_rate=0.5``; the train step gives every train-mode forward its own dropout key).
Evaluation: FGSM, PGD-20 (SPAT Table 4), PGD-40 without random start (TRADES
``pgd_attack_mnist.py``), PGD-200 (UDR), CW-Linf and AutoAttack standard, eps 0.3, step 0.01.
Reference numbers: UDR Table 1 TRADES 99.4 / PGD-200 95.1 / AA 90.9; SPAT Table 4 TRADES 99.10 /
FGSM 97.42 / PGD-20 96.22 / CW 96.01.

Expected cost: ~0.5 GPU-hours training on one H100 (small CNN, 42 passes per step, 469 steps x
100 epochs), a few minutes of evaluation; an estimate.
"""

from jaxrobust.configs.base import base_config

EPS = 0.3
STEP = 0.01


def mnist_eval_attacks(eps: float = EPS) -> list:
  return [
      {"name": "fgsm", "label": "FGSM", "eps": eps},
      {"name": "pgd", "label": "PGD-20", "eps": eps, "steps": 20, "step_size": STEP, "init": "uniform"},
      {"name": "pgd", "label": "PGD-40", "eps": eps, "steps": 40, "step_size": STEP, "init": "none"},
      {"name": "pgd", "label": "PGD-200", "eps": eps, "steps": 200, "step_size": STEP, "init": "uniform"},
      {"name": "cw_linf", "label": "CW-Linf", "eps": eps, "steps": 20, "step_size": STEP},
      {"name": "autoattack", "label": "AA", "eps": eps, "version": "standard"},
  ]


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/mnist_trades"
  cfg["data"].update(name="mnist", source="auto", augment=False)
  cfg["model"] = {"name": "small_cnn", "head": "linear", "channels": (32, 64), "hidden": 200, "dropout_rate": 0.5}
  cfg["method"] = {"name": "trades", "eps": EPS, "step_size": STEP, "steps": 40, "beta": 1.0}
  cfg["optim"].update(name="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
                      schedule="piecewise", boundaries=(55, 75, 90), decay=0.1)
  cfg["train"].update(epochs=100, batch_size=128, checkpoint_every_steps=2000, log_every_steps=50)
  cfg["eval"].update(batch_size=500, attacks=mnist_eval_attacks())
  return cfg
