"""Cross-check of jaxrobust's L1 attacks (APGD-L1, APGD-T-L1, FAB-T-L1, Square-L1, the L1 AutoAttack cascade)
against the original AutoAttack code (Croce & Hein; github.com/fra31/auto-attack, which has L1 since "Mind the
box", 2021).

No AutoAttack distribution with L1 installs from the package index here (torchattacks 3.5's APGD/APGDT/FAB/Square
are Linf/L2 only), so the reference is the repository's source, read from ``--reference-src DIR`` (a folder holding
``autoattack/``; e.g. extracted from a clone of fra31/auto-attack, commit a392200 for the recorded run).
Both sides attack the digits MLP of ``crosscheck_torchattacks.py`` (64-32-10 tanh, weights ported to torch) on the
same held-out points with the reference's parameters. Random starts differ, so robust accuracies agree only up to
sampling noise. Both sides run the full L1 'standard' (with Square-L1, 5000 queries) and, as ``autoattack-l1-white``,
its three white-box stages, which measures what Square adds.

    python -m benchmarks.crosscheck_autoattack_l1 --reference-src /path/with/autoattack [--n 200] [--eps 1.0 1.5]
        [--rows square-l1 autoattack-l1]

writes benchmarks/results/crosscheck_autoattack_l1.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import warnings

import jax
import numpy as np

from benchmarks.report import write_crosscheck
from benchmarks.torch_models import digits_twin
from jaxrobust.attacks import apgd as apgd_lib
from jaxrobust.attacks import autoattack as aa_lib
from jaxrobust.attacks import fab as fab_lib
from jaxrobust.attacks import pgd as pgd_lib
from jaxrobust.attacks import square as square_lib
from tests.attacks import aa_helpers

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROWS = ("apgd-ce", "apgd-ce-largereps", "apgd-t-largereps", "fab-t", "square-l1", "autoattack-l1-white",
        "autoattack-l1", "pgd-l1")
WHITE_BOX = ("apgd-ce", "apgd-t", "fab-t")


def _jax(name, f, x, y, key, eps):
  if name == "apgd-ce":
    return apgd_lib.apgd(f, x, y, key, eps=eps, norm="l1", n_iter=100)
  if name == "apgd-ce-largereps":
    return apgd_lib.apgd(f, x, y, key, eps=eps, norm="l1", n_iter=100, use_largereps=True)
  if name == "apgd-t-largereps":
    return apgd_lib.apgd_targeted(f, x, y, key, eps=eps, norm="l1", n_iter=100, n_target_classes=5,
                                  use_largereps=True)
  if name == "fab-t":
    return fab_lib.fab_targeted(f, x, y, key, eps=eps, norm="l1", n_iter=100, n_target_classes=9)
  if name == "pgd-l1":
    return pgd_lib.pgd(f, x, y, key, eps=eps, norm="l1", step_size=eps / 4, steps=100)
  if name == "square-l1":
    return square_lib.square(f, x, y, key, eps=eps, norm="l1", n_queries=5000, p_init=0.8)
  # The white-box row: the L1 version's stages with their settings, Square left out of the cascade.
  kw = dict(attacks=WHITE_BOX, attack_kwargs={n: c for n, c in aa_lib.VERSIONS_L1["standard"]}) \
      if name == "autoattack-l1-white" else {}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return aa_lib.run_autoattack(f, x, y, key, eps=eps, norm="l1", version="standard", **kw)[0]


def _ref(name, model, xt, yt, eps, seed):
  from autoattack import AutoAttack
  from autoattack.autopgd_base import APGDAttack, APGDAttack_targeted
  from autoattack.fab_pt import FABAttack_PT
  from autoattack.square import SquareAttack
  if name in ("apgd-ce", "apgd-ce-largereps"):
    return APGDAttack(model, norm="L1", eps=eps, n_iter=100, n_restarts=1, seed=seed, loss="ce", device="cpu",
                      use_largereps=name.endswith("largereps")).perturb(xt, yt)
  if name == "apgd-t-largereps":
    return APGDAttack_targeted(model, norm="L1", eps=eps, n_iter=100, n_restarts=1, seed=seed, device="cpu",
                               n_target_classes=5, use_largereps=True).perturb(xt, yt)
  if name == "fab-t":
    a = FABAttack_PT(model, norm="L1", eps=eps, n_restarts=1, n_iter=100, seed=seed, device="cpu",
                     n_target_classes=9)
    a.targeted = True
    return a.perturb(xt, yt)
  if name == "square-l1":
    return SquareAttack(model, norm="L1", eps=eps, n_queries=5000, p_init=0.8, n_restarts=1, seed=seed,
                        device="cpu", resc_schedule=False).perturb(xt, yt)
  adv = AutoAttack(model, norm="L1", eps=eps, version="standard", seed=seed, device="cpu", verbose=False)
  if name == "autoattack-l1-white":
    adv.attacks_to_run = list(WHITE_BOX)
  return adv.run_standard_evaluation(xt, yt, bs=len(yt))


def run(reference_src: str, n: int = 200, eps_list=(1.0, 1.5), seed: int = 0, rows=ROWS) -> dict:
  import torch
  torch.set_num_threads(1)
  sys.path.insert(0, str(pathlib.Path(reference_src).resolve()))
  params, f = aa_helpers.train_digits("mlp")
  x, y = aa_helpers.digits_test(n)
  model = digits_twin(params, "mlp")
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
  yt = torch.tensor(np.asarray(y)).long()

  def tacc(xa):
    with torch.no_grad():
      return float((model(xa).argmax(1) == yt).float().mean())

  out = []
  for eps in eps_list:
    for name in rows:
      row = dict(attack=name, eps=eps)
      t0 = time.time()
      xa = _jax(name, f, x, y, jax.random.PRNGKey(seed), eps)
      row["jax"] = round(aa_helpers.accuracy(f, xa, y), 4)
      row["jax_max_l1"] = round(float(np.abs(np.asarray(xa - x)).reshape(n, -1).sum(1).max()), 5)
      row["jax_s"] = round(time.time() - t0, 1)
      if name != "pgd-l1":
        t0 = time.time()
        xr = _ref(name, model, xt, yt, eps, seed)
        row["reference"] = round(tacc(xr), 4)
        row["ref_max_l1"] = round(float((xr - xt).abs().reshape(n, -1).sum(1).max()), 5)
        row["ref_s"] = round(time.time() - t0, 1)
      if "reference" in row:
        row["diff_pp"] = round(100 * (row["jax"] - row["reference"]), 2)
      out.append(row)
      print(row, flush=True)
  meta = dict(model="mlp 64-32-10 tanh (optax Adam on the first 1200 sklearn digits), torch twin for the reference",
              points=f"digits[1200:{1200 + n}]", n=n, seed=seed, clean=aa_helpers.accuracy(f, x, y),
              reference="fra31/auto-attack source (autopgd_base.py, fab_pt.py, autoattack.py); not on the package index",
              jax=jax.__version__, torch=torch.__version__,
              note="pgd-l1 is jaxrobust's PGD-L1 (step eps/4, 100 steps) for context. autoattack-l1 = APGD-CE "
                   "(5 restarts, 3/2/1 eps schedule) -> APGD-T (5 targets, schedule) -> FAB-T (9 targets) -> "
                   "Square-L1 (5000 queries) on both sides; autoattack-l1-white: the same without Square. Shared "
                   "2-core CPU: times indicative only (jax times include compilation).")
  return dict(meta=meta, rows=out)


def markdown(res: dict) -> str:
  m = res["meta"]
  lines = [f"Robust accuracy (L1) on {m['n']} held-out digits (clean {m['clean']:.1%}), same weights both sides.", "",
           "| attack | eps | jaxrobust | reference (fra31/auto-attack) | diff (pp) |", "|---|---|---|---|---|"]
  fmt = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
  for r in res["rows"]:
    d = r.get("diff_pp")
    lines.append(f"| {r['attack']} | {r['eps']} | {fmt(r.get('jax'))} | {fmt(r.get('reference'))} | "
                 f"{'-' if d is None else f'{d:+.1f}'} |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--reference-src", required=True)
  ap.add_argument("--n", type=int, default=200)
  ap.add_argument("--eps", type=float, nargs="+", default=[1.0, 1.5])
  ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
  ap.add_argument("--out", default=str(RESULTS / "crosscheck_autoattack_l1.json"))
  args = ap.parse_args(argv)
  res = run(args.reference_src, n=args.n, eps_list=tuple(args.eps), rows=tuple(args.rows))
  write_crosscheck(res, markdown, args.out)


if __name__ == "__main__":
  main()
