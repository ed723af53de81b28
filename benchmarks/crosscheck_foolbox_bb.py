"""Cross-check of jaxrobust's Brendel & Bethge attack (Linf, L2) against foolbox 3.3.4's
``LinfinityBrendelBethgeAttack`` / ``L2BrendelBethgeAttack``.

Same model and points as ``crosscheck_foolbox_min_norm`` (the 64-32-10 tanh digits MLP and its torch twin). Both
sides start from the same points: jaxrobust's PGD-20 start (radius ``INIT_EPS``, step radius / 2, random start)
on the JAX model, kept where the torch twin also finds it adversarial (foolbox asserts every start is), then
200 B&B steps with foolbox's other defaults. foolbox's trust region is lr * (batch size * D); the row
"lr x n" gives jaxrobust lr * n (n the points attacked) so that both take the same steps, the row "default"
jaxrobust's per-example lr * D. Per row: success rate, median norm (over the points correct clean; not started =
inf), robust accuracy at three eps (the per-point minimum norms, ``evaluate.min_norm_curve``), the per-point
norm ratio jax / foolbox, the share of points whose verdict at each eps agrees, and wall times. Each side's points
are judged by its own model (B&B ends within ~1e-6 of the boundary in logit margin, where the float rounding of
the JAX model and its torch twin disagree); ``flipped_on_torch_twin`` is the share of jaxrobust's adversarials
that the torch twin classifies correctly.

    PYTHONPATH=/path/to/foolbox_site python -m benchmarks.crosscheck_foolbox_bb [--n 200]

foolbox's B&B needs numba (``pip install foolbox==3.3.4 numba``). Writes
benchmarks/results/crosscheck_foolbox_bb.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from benchmarks.report import write_crosscheck
from benchmarks.crosscheck_foolbox_min_norm import RESULTS, _fmt, _min_norms, _summary, digits_setup
from jaxrobust.attacks.brendel_bethge import bb_search
from jaxrobust.attacks.per_example import example_keys
from jaxrobust.attacks.pgd import pgd
from jaxrobust.evaluate.min_norm_curve import robust_accuracy_at

INIT_EPS = {"linf": 0.3, "l2": 3.0}
EPS = {"linf": (0.05, 0.1, 0.2), "l2": (0.5, 1.0, 2.0)}
STEPS = 200


def run_crosscheck(n: int = 200, seed: int = 0, norms=("linf", "l2"), verbose: bool = True) -> dict:
  import foolbox as fb
  import torch
  f, x, y, fmodel, xt, yt, y_np, torch_pred, correct = digits_setup(n)
  rows = []
  for norm in norms:
    radius = INIT_EPS[norm]
    start = np.asarray(pgd(f, x, y, example_keys(jax.random.key(seed), n), eps=radius, step_size=radius / 2,
                           steps=20, norm=norm))
    started = correct & (torch_pred(start) != y_np)  # the points both sides attack
    idx = np.nonzero(started)[0]
    cls = {"linf": fb.attacks.LinfinityBrendelBethgeAttack, "l2": fb.attacks.L2BrendelBethgeAttack}[norm]
    ref = cls(steps=STEPS)
    t0 = time.time()
    xa_sub = ref.run(fmodel, xt[idx], fb.criteria.Misclassification(yt[idx]),
                     starting_points=torch.tensor(start[idx]).permute(0, 3, 1, 2).contiguous())
    ref_s = time.time() - t0
    xa_ref = np.asarray(x).copy()
    xa_ref[idx] = xa_sub.detach().permute(0, 2, 3, 1).numpy()
    r_ref = _min_norms(torch_pred(xa_ref), xa_ref, x, y_np, correct, norm)
    for variant, lr in (("lr x n", 1e-3 * len(idx)), ("default", 1e-3)):
      fixed = jax.numpy.asarray(np.where(started[:, None, None, None], start, np.asarray(x)))
      fn = jax.jit(lambda f, x, y, lr=lr: bb_search(f, x, y, jax.random.key(seed), norm=norm, steps=STEPS, lr=lr,
                                                     init=lambda *_: fixed))
      t0 = time.time()
      res = fn(f, x, y)
      res.x_adv.block_until_ready()
      first = time.time() - t0
      t0 = time.time()
      fn(f, x, y).x_adv.block_until_ready()
      warm = time.time() - t0
      xa = np.asarray(res.x_adv)
      jax_pred = np.asarray(jax.numpy.argmax(f(res.x_adv), axis=1))
      r_jax = _min_norms(jax_pred, xa, x, y_np, correct, norm)
      on_torch = _min_norms(torch_pred(xa), xa, x, y_np, correct, norm)
      flipped = float(np.mean(np.isfinite(r_jax) & ~np.isfinite(on_torch)))
      acc_jax = robust_accuracy_at(r_jax, EPS[norm])
      acc_ref = robust_accuracy_at(r_ref, EPS[norm])
      agree = [float(np.mean((r_jax > e) == (r_ref > e))) for e in EPS[norm]]
      row = dict(attack="bb", norm=norm, jax_variant=variant, n_started=int(started.sum()), **_summary(r_jax, r_ref),
                 eps=list(EPS[norm]), robust_acc_jax=[float(a) for a in acc_jax],
                 robust_acc_ref=[float(a) for a in acc_ref], verdict_agreement=agree, flipped_on_torch_twin=flipped,
                 jax_s=round(first, 2), jax_warm_s=round(warm, 2), foolbox_s=round(ref_s, 2))
      rows.append(row)
      if verbose:
        print(row, flush=True)
  meta = dict(model="mlp 64-32-10 tanh (optax Adam on the first 1200 sklearn digits)", points=f"digits[1200:{1200 + n}]",
              n=n, n_correct=int(correct.sum()), seed=seed, steps=STEPS, init_eps=INIT_EPS, jax=jax.__version__,
              torch=torch.__version__, foolbox=fb.__version__,
              note="Robust accuracy over the points correct clean. Both start from jaxrobust's PGD-20 points. CPU "
                   "wall-clock on a shared 2-core machine: indicative only; jax_s includes compilation, jax_warm_s is "
                   "a second call; foolbox_s includes numba's first-call compilation.")
  return dict(meta=meta, rows=rows)


def markdown(result: dict) -> str:
  m = result["meta"]
  lines = [f"Brendel & Bethge on {m['n']} held-out digits ({m['n_correct']} correct clean; {m['model']}), "
           f"{m['steps']} steps from the same PGD-20 starts, foolbox {m['foolbox']}.", "",
           "| norm | jaxrobust lr | started | median norm jax / fb | robust acc at eps (jax / fb) | verdict agreement | "
           "per-point ratio jax/fb p5 / median / p95 | flipped on torch twin | jax s (1st / warm) | foolbox s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    accs = ", ".join(f"{e:g}: {a:.1%} / {b:.1%}" for e, a, b in zip(r["eps"], r["robust_acc_jax"], r["robust_acc_ref"]))
    agree = ", ".join(f"{a:.1%}" for a in r["verdict_agreement"])
    lines.append(f"| {r['norm']} | {r['jax_variant']} | {r['n_started']} | {_fmt(r['median_jax'])} / "
                 f"{_fmt(r['median_ref'])} | {accs} | {agree} | {r['ratio_p5']:.3f} / {r['ratio_median']:.3f} / "
                 f"{r['ratio_p95']:.3f} | {r['flipped_on_torch_twin']:.1%} | {r['jax_s']:.1f} / {r['jax_warm_s']:.1f} | {r['foolbox_s']:.1f} |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n", type=int, default=200)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default=str(RESULTS / "crosscheck_foolbox_bb.json"))
  args = ap.parse_args(argv)
  res = run_crosscheck(n=args.n, seed=args.seed)
  write_crosscheck(res, markdown, args.out)


if __name__ == "__main__":
  main()
