"""The zero-setup quickstart: standard vs PGD-AT on the shipped digits, side by side.

Trains both models (checkpoints under <out>/standard and <out>/pgd_at), evaluates clean and
PGD-20 accuracy over an eps grid (the table is the grid's point at the training eps, so table and
curve are one evaluation), prints a table, and writes <out>/quickstart_report.json and, with the
[plot] extra (matplotlib), <out>/robust_accuracy_vs_eps.png.
"""

from __future__ import annotations

import copy
import os
import time

import jax

from jaxrobust.configs import validate_config
from jaxrobust.configs import quickstart_digits as qs
from jaxrobust.evaluate.records import provenance, write_record
from jaxrobust.evaluate.robust import RobustEvaluator, format_table, robust_accuracy_curve
from jaxrobust.train.loop import Trainer, load_splits

KEY_SEED = 1  # the evaluation's PRNG seed (random starts), recorded in the report


def run_quickstart(output_dir: str = "runs/quickstart", *, progress: bool = True, epochs: int | None = None,
                   resume: bool = True) -> dict:
  """Trains, evaluates, writes <out>/quickstart_report.json (also appended to <out>/evaluations.jsonl) and the
  plot. The table's attack is one point of the eps curve: table and plot show the same evaluation."""
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
    spec = dict(cfg["eval"]["attacks"][0])
    grid = sorted({*map(float, cfg["eval"]["eps_grid"]), float(spec["eps"])})
    curve = robust_accuracy_curve(evaluator, variables, test_ds, spec, grid, batch_size=cfg["eval"]["batch_size"],
                                  progress=False, key=jax.random.PRNGKey(KEY_SEED))
    r = curve.pop("reports")[grid.index(float(spec["eps"]))]  # the table's row is the curve's point at its eps
    r["train_seconds"] = train_s
    r["checkpoint_dir"] = trainer.checkpointer.directory
    results[name] = r
    curves[name] = curve
    trainer.checkpointer.close()
  table = format_table(results)
  report = {"dataset": "digits (UCI optdigits via scikit-learn's load_digits, shipped)", "n_train": len(train_ds),
            "n_test": len(test_ds), "results": results, "curves": curves, "table": table,
            "total_seconds": time.perf_counter() - t_start, "backend": jax.default_backend(),
            "devices": jax.device_count(),
            "provenance": provenance(seed=KEY_SEED, dataset=test_ds, attacks=[
                dict(spec, eps=e, label=l) for e, l in zip(curves["standard"]["eps"], curves["standard"]["labels"])])}
  plot_path = os.path.join(output_dir, "robust_accuracy_vs_eps.png")
  try:
    plot_curves(curves, plot_path, title="digits: PGD-20 robust accuracy")
    report["plot"] = plot_path
  except ImportError as e:  # matplotlib is the [plot] extra: the numbers stand without the picture
    report["plot"], report["plot_note"] = None, f"plot skipped: {e}"
  os.makedirs(output_dir, exist_ok=True)
  write_record(os.path.join(output_dir, "quickstart_report.json"), report)
  return report


def plot_curves(curves: dict, path: str, title: str = "") -> dict:
  """Robust accuracy (%) against eps, one line per model, each point marked with its own eps.

  Returns {model: (eps list, accuracy % list)} as drawn (read back from the figure). Raises ImportError
  naming ``pip install 'jaxrobust[plot]'`` when matplotlib is not installed."""
  try:
    import matplotlib
  except ImportError as e:
    raise ImportError("the robust-accuracy plot needs matplotlib: pip install 'jaxrobust[plot]'") from e
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
  drawn = {}
  for name, c in curves.items():
    (line,) = ax.plot(c["eps"], [100 * a for a in c["robust_acc"]], marker="o", label=name)
    drawn[name] = ([float(v) for v in line.get_xdata()], [float(v) for v in line.get_ydata()])
  ax.set_xticks(next(iter(curves.values()))["eps"])
  ax.tick_params(axis="x", labelrotation=45)
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
  return drawn
