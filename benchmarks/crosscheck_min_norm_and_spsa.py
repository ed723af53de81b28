"""Cross-check of jaxrobust's SPSA, DeepFool and EAD (``attacks/spsa.py``, ``deepfool.py``, ``ead.py``) against
torchattacks 3.5 (``SPSA``, ``DeepFool``, ``EADL1``, ``EADEN``).

Same weights and points as ``crosscheck_torchattacks`` (the digits MLP of ``tests/attacks/aa_helpers.py`` and its
torch twin ``torch_models.digits_twin``). Reported per attack: SPSA (Linf, eps) robust accuracy; DeepFool and EAD
(minimum-norm) success rate and median perturbation norm over the points both libraries fool (L2 for DeepFool, L1
for EAD), the median relative difference of the two norms per point; for all, per-point agreement (the fraction
of points both libraries leave correct / fool alike) and the time of both.

Configurations. "torchattacks config" rows set jaxrobust's options to what torchattacks does: SPSA init='none'
and spsa_samples = 2 x torchattacks' nb_sample (it counts mirrored pairs); EAD warm_start=True (x_k, y_k carried
across the binary search) and abort_early='batch'. The "default" rows are jaxrobust's defaults (SPSA: cleverhans'
uniform start and 128 samples; EAD: the paper's restart per search step, per-example abort). torchattacks'
DeepFool returns its last iterate where it fails; success there is read from the model's prediction on it.
SPSA draws differ (torchattacks one direction per sample for the whole batch, jaxrobust per example), so its
rows agree up to sampling noise; DeepFool and EAD are deterministic.

    python -m benchmarks.crosscheck_min_norm_and_spsa [--n 100] [--eps 0.08] [--spsa-steps 20]

prints a markdown table and writes benchmarks/results/crosscheck_min_norm_and_spsa.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.report import write_crosscheck
from benchmarks.crosscheck_torchattacks import RESULTS
from benchmarks.torch_models import digits_twin
from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.registry import get_attack
from tests.attacks import aa_helpers

NORM = {"spsa": "linf", "deepfool": "l2", "ead_l1": "l1", "ead_en": "l1"}


def _rows_config(eps: float, spsa_steps: int, nb_sample: int, ead_iters: int):
  """label -> (jaxrobust name, jaxrobust config, torchattacks class, torchattacks kwargs)."""
  spsa_t = dict(eps=eps, delta=0.01, lr=0.01, nb_iter=spsa_steps, nb_sample=nb_sample, max_batch_size=nb_sample)
  ead_t = dict(kappa=0, lr=0.01, binary_search_steps=9, max_iterations=ead_iters, abort_early=True,
               initial_const=1e-3, beta=1e-3)
  ead_j = dict(max_iterations=ead_iters)
  ta_like = dict(warm_start=True, abort_early="batch")
  return {
      "spsa (torchattacks config)": ("spsa", dict(eps=eps, steps=spsa_steps, init="none", spsa_samples=2 * nb_sample),
                                     "SPSA", spsa_t),
      "spsa (default: cleverhans)": ("spsa", dict(eps=eps, steps=spsa_steps), "SPSA", spsa_t),
      "deepfool l2": ("deepfool", dict(steps=50, overshoot=0.02), "DeepFool", dict(steps=50, overshoot=0.02)),
      "eadl1 (torchattacks config)": ("ead_l1", dict(ead_j, **ta_like), "EADL1", ead_t),
      "eadl1 (default)": ("ead_l1", ead_j, "EADL1", ead_t),
      "eaden (torchattacks config)": ("ead_en", dict(ead_j, **ta_like), "EADEN", ead_t),
      "eaden (default)": ("ead_en", ead_j, "EADEN", ead_t),
  }


def run_crosscheck(n: int = 100, eps: float = 0.08, spsa_steps: int = 20, nb_sample: int = 64, ead_iters: int = 100,
                   kind: str = "mlp", seed: int = 0, rows=None, verbose: bool = True) -> dict:
  import torch
  import torchattacks as ta
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  params, f = aa_helpers.train_digits(kind)
  x, y = aa_helpers.digits_test(n)
  model = digits_twin(params, kind)
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
  yt = torch.tensor(np.asarray(y)).long()
  config = _rows_config(eps, spsa_steps, nb_sample, ead_iters)
  out = []
  torch_cache = {}
  for label in rows or config:
    name, jcfg, cls, tkw = config[label]
    norm = NORM[name]
    attack = get_attack(name, **jcfg)
    run = jax.jit(lambda xx, yy, k: attack(f, xx, yy, k))
    t0 = time.time()
    xa = run(x, y, jax.random.key(seed)).block_until_ready()
    jax_s = time.time() - t0
    t0 = time.time()
    run(x, y, jax.random.key(seed)).block_until_ready()
    jax_warm = time.time() - t0
    key = (cls, tuple(sorted(tkw.items())))
    if key not in torch_cache:  # the torch run is shared by a "torchattacks config" row and a "default" row
      torch.manual_seed(seed)
      t0 = time.time()
      xat = getattr(ta, cls)(model, **tkw)(xt, yt).detach()
      torch_cache[key] = (xat, time.time() - t0)
    xat, torch_s = torch_cache[key]
    with torch.no_grad():
      t_correct = (model(xat).argmax(1) == yt).numpy()
    j_correct = np.asarray(jnp.argmax(f(xa), 1) == y)
    xat_nhwc = jnp.asarray(xat.permute(0, 2, 3, 1).numpy())
    d_j = np.asarray(threat.per_example_norm(xa - x, norm))
    d_t = np.asarray(threat.per_example_norm(xat_nhwc - x, norm))
    row = dict(attack=label, name=name, torch_class=cls, norm=norm, jax_config=jcfg,
               torch_kwargs={k: v for k, v in tkw.items()}, jax_acc=float(j_correct.mean()),
               torch_acc=float(t_correct.mean()), agree=float(np.mean(j_correct == t_correct)),
               jax_s=round(jax_s, 2), jax_warm_s=round(jax_warm, 3), torch_s=round(torch_s, 2),
               max_dist_jax=float(d_j.max()))
    if name != "spsa":
      both = ~j_correct & ~t_correct & (d_j > 0) & (d_t > 0)  # fooled by both, not already misclassified
      rel = np.abs(d_j[both] - d_t[both]) / d_t[both]
      with torch.no_grad():
        m_t = losses_lib.margin(jnp.asarray(model(xat).numpy()), y)
      m_j = losses_lib.margin(f(xa), y)
      near_tie = (jnp.abs(m_j) < 1e-3) | (jnp.abs(m_t) < 1e-3)  # z_y - max_{k != y} z_k within 1e-3 of 0
      row["disagree_near_tie"] = int(np.sum((j_correct != t_correct) & np.asarray(near_tie)))
      row.update(jax_success=float((~j_correct).mean()), torch_success=float((~t_correct).mean()),
                 both_fooled=int(both.sum()), median_dist_jax=float(np.median(d_j[both])) if both.any() else None,
                 median_dist_torch=float(np.median(d_t[both])) if both.any() else None,
                 median_rel_diff=float(np.median(rel)) if both.any() else None,
                 max_abs_x_diff=float(np.max(np.abs(np.asarray(xa) - np.asarray(xat_nhwc)))),
                 jax_unchanged_when_correct=bool(np.all(d_j[j_correct] == 0)))
    out.append(row)
    if verbose:
      print(row, flush=True)
  with torch.no_grad():
    clean_torch = float((model(xt).argmax(1) == yt).float().mean())
  meta = dict(model=f"{kind} (aa_helpers.train_digits)", points=f"digits[1200:{1200 + n}]", n=n, eps=eps,
              spsa_steps=spsa_steps, torch_nb_sample=nb_sample, ead_iters=ead_iters, seed=seed,
              clean_jax=aa_helpers.accuracy(f, x, y), clean_torch=clean_torch, jax=jax.__version__,
              torch=torch.__version__, torchattacks=ta.__version__,
              note="CPU wall-clock on a shared 2-core machine: indicative only. jax_s: first call (compilation "
                   "included), jax_warm_s: a second call. agree: fraction of points both libraries leave correct / "
                   "fool alike. Distances (L2 DeepFool, L1 EAD) over the points both fool that were not already "
                   "misclassified; median_rel_diff = median |d_jax - d_torch| / d_torch over those points. disagree_near_tie: "
                   "points the libraries disagree on where either output's margin z_y - max_k z_k is within 1e-3 of 0 "
                   "(DeepFool stalls on the boundary when the box clip cuts its steps; argmax then breaks the tie by "
                   "float rounding).")
  return dict(meta=meta, rows=out)


def markdown(result: dict) -> str:
  m = result["meta"]
  lines = [f"{m['n']} held-out digits ({m['model']}; clean {m['clean_jax']:.1%}); SPSA eps {m['eps']} Linf, "
           f"{m['spsa_steps']} steps, torchattacks nb_sample {m['torch_nb_sample']} pairs; EAD "
           f"{m['ead_iters']} iterations x 9 search steps.", "",
           "| attack | robust acc jaxrobust | torchattacks | points agree | median dist jaxrobust | torchattacks | "
           "median rel diff | jax s (1st / warm) | torch s |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    if r["name"] == "spsa":
      dist = "| - | - | -"
    else:
      dist = (f"| {r['median_dist_jax']:.4f} ({r['norm']}) | {r['median_dist_torch']:.4f} | "
              f"{100 * r['median_rel_diff']:.2f}%")
    lines.append(f"| {r['attack']} | {r['jax_acc']:.1%} | {r['torch_acc']:.1%} | {r['agree']:.1%} {dist} | "
                 f"{r['jax_s']:.1f} / {r['jax_warm_s']:.2f} | {r['torch_s']:.2f} |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n", type=int, default=100)
  ap.add_argument("--eps", type=float, default=0.08)
  ap.add_argument("--spsa-steps", type=int, default=20)
  ap.add_argument("--nb-sample", type=int, default=64, help="torchattacks SPSA nb_sample (mirrored pairs)")
  ap.add_argument("--ead-iters", type=int, default=100)
  ap.add_argument("--out", default=str(RESULTS / "crosscheck_min_norm_and_spsa.json"))
  args = ap.parse_args(argv)
  res = run_crosscheck(n=args.n, eps=args.eps, spsa_steps=args.spsa_steps, nb_sample=args.nb_sample,
                       ead_iters=args.ead_iters)
  write_crosscheck(res, markdown, args.out)


if __name__ == "__main__":
  main()
