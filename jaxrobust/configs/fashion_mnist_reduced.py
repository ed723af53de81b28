"""The reduced CPU protocol of experiments/classification: one small budget shared by every method.

    jaxrobust train --config fashion_mnist_reduced method.name=trades method.eps=0.1 method.step_size=0.05 method.steps=5 method.beta=6.0

One architecture, data subset, schedule and evaluation for every method; the method section is
filled in per method by ``python -m experiments.classification.run_reduced`` (which prints the exact
``jaxrobust train`` line of each run). About 3 minutes per method on 2 loaded CPU cores
(training about 1, evaluation about 2).
"""

from jaxrobust.configs.base import base_config

EPS = 0.1  # the usual Fashion-MNIST Linf budget (MNIST uses 0.3)


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/fashion_mnist_reduced"
  cfg["data"].update(name="fashion_mnist", source="auto", augment=False, train_subset=2048, test_subset=500)
  # Narrow SmallCNN (the TRADES/SPAT MNIST net at half width): what fits the CPU budget.
  cfg["model"] = {"name": "small_cnn", "head": "linear", "channels": (16, 32), "hidden": 100}
  cfg["method"] = {"name": "standard"}
  # One x0.1 drop at 3/4 of training, where the papers' first drop (75 of 100-120) sits.
  cfg["optim"].update(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="piecewise",
                      boundaries=(2,), decay=0.1)
  cfg["train"].update(epochs=3, batch_size=64, checkpoint_every_steps=10**9, log_every_steps=10)
  cfg["eval"].update(batch_size=250, attacks=[
      {"name": "pgd", "label": "PGD-20", "eps": EPS, "steps": 20, "step_size": 0.01}])
  return cfg
