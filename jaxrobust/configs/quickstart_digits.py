"""Quickstart on the shipped sklearn digits (8x8, no download): standard training.

    jaxrobust train --config quickstart_digits
    jaxrobust train --config quickstart_digits method.name=pgd_at method.eps=0.2 method.step_size=0.05 method.steps=7

``jaxrobust quickstart`` trains this config twice (standard and PGD-AT) and compares them.
"""

from jaxrobust.configs.base import base_config

EPS = 0.2  # digits pixels are 0..16 scaled to [0, 1]; 0.2 ~ 3 grey levels of 16


def get_config() -> dict:
  cfg = base_config()
  cfg["output_dir"] = "runs/quickstart_digits"
  cfg["data"].update(name="digits", source="shipped")
  cfg["model"].update(name="small_cnn", conv_padding=1)
  cfg["method"] = {"name": "standard"}
  cfg["optim"].update(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine")
  cfg["train"].update(epochs=30, batch_size=64, checkpoint_every_steps=200, log_every_steps=20)
  cfg["eval"].update(batch_size=360, attacks=[
      # step_size_ratio: step = eps / 8 at any eps, so the eps sweep reuses one compiled program
      {"name": "pgd", "label": f"PGD-20 eps={EPS}", "eps": EPS, "steps": 20, "step_size_ratio": 1 / 8},
  ], eps_grid=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4))
  return cfg


def pgd_at_config() -> dict:
  cfg = get_config()
  cfg["output_dir"] = "runs/quickstart_digits_pgd_at"
  cfg["method"] = {"name": "pgd_at", "eps": EPS, "step_size": EPS / 4, "steps": 7, "mix": 1.0}
  return cfg
