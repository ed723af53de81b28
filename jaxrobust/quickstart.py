"""The zero-setup quickstart: standard vs PGD-AT on the shipped digits, side by side.

Trains both models (checkpoints under <out>/standard and <out>/pgd_at), evaluates clean and
PGD-20 accuracy, sweeps eps for a robust-accuracy curve, prints a table, and writes
<out>/quickstart_report.json and <out>/robust_accuracy_vs_eps.png.
"""

from __future__ import annotations

import copy
import os
import time

import jax

from jaxrobust.configs import validate_config
from jaxrobust.configs import quickstart_digits as qs
from jaxrobust.evaluate.robust import RobustEvaluator, format_table, robust_accuracy_curve
from jaxrobust.train.checkpoint import write_json
from jaxrobust.train.loop import Trainer, load_splits


def run_quickstart(output_dir: str = "runs/quickstart", *, progress: bool = True, epochs: int | None = None,
                   resume: bool = True) -> dict:
  from jaxrobust.models import make_apply
  t_start = time.perf_counter()
  configs = {"standard": qs.get_config(), "pgd_at": qs.pgd_at_config()}
  train_ds = test_ds = None
  evaluator = None  # shared: both models have the same architecture, so attacks compile once
  results, curves = {}, {}
  for name, cfg in configs.items():
    cfg = copy.deepcopy(cfg)
    cfg["output_dir"] = os.path.join(output_dir, name)
    if epochs is not None:
      cfg["train"]["epochs"] = int(epochs)
    validate_config(cfg)
    if train_ds is None:
      train_ds, test_ds = load_splits(cfg)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, train_ds=train_ds, test_ds=test_ds, progress=progress)
    state = trainer.fit(resume=resume)
    train_s = time.perf_counter() - t0
    variables = trainer.variables(state)
    if evaluator is None:
      evaluator = RobustEvaluator(make_apply(trainer.module), mesh=trainer.mesh)
    r = evaluator.evaluate(variables, test_ds, cfg["eval"]["attacks"], batch_size=cfg["eval"]["batch_size"],
                           progress=False, key=jax.random.PRNGKey(1))
    spec = dict(cfg["eval"]["attacks"][0])
    curves[name] = robust_accuracy_curve(evaluator, variables, test_ds, spec, cfg["eval"]["eps_grid"],
                                         batch_size=cfg["eval"]["batch_size"], progress=False,
                                         key=jax.random.PRNGKey(2))
    r["train_seconds"] = train_s
    r["checkpoint_dir"] = trainer.checkpointer.directory
    results[name] = r
    trainer.checkpointer.close()
  table = format_table(results)
  report = {"dataset": "digits (sklearn load_digits, shipped)", "n_train": len(train_ds), "n_test": len(test_ds),
            "results": results, "curves": curves, "table": table,
            "total_seconds": time.perf_counter() - t_start, "backend": jax.default_backend(),
            "devices": jax.device_count()}
  os.makedirs(output_dir, exist_ok=True)
  write_json(os.path.join(output_dir, "quickstart_report.json"), report)
  plot_path = os.path.join(output_dir, "robust_accuracy_vs_eps.png")
  plot_curves(curves, plot_path, title="digits: PGD-20 robust accuracy")
  report["plot"] = plot_path
  return report


def plot_curves(curves: dict, path: str, title: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  for name, c in curves.items():
    ax.plot(c["eps"], [100 * a for a in c["robust_acc"]], marker="o", label=name)
  ax.set_xlabel("eps (Linf, pixels in [0, 1])")
  ax.set_ylabel("robust accuracy (%)")
  ax.set_ylim(0, 100)
  ax.grid(alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
