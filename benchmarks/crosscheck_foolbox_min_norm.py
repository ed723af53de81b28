"""Cross-check of jaxrobust's minimum-norm attacks FMN (Linf, L2, L1) and DDN (L2) against foolbox 3.3.4.

Both sides attack the same model (the attack tests' 64-32-10 tanh MLP trained on sklearn's 8x8 digits, ported
weight for weight to torch: ``benchmarks.torch_models.digits_twin``, as ``crosscheck_torchattacks``) on the same
held-out points with foolbox's defaults: FMN 100 steps, max_stepsize 1, min_stepsize 0.01, gamma 0.05 (annealed
to 0.001), no init attack; DDN 100 steps, init_epsilon 1, gamma 0.05. Per row: success rate (adversarial found,
among the points correct clean), median perturbation norm over those points (inf = not broken), the ratio
jax / foolbox of the per-point norms where both broke the point (median, 5th and 95th percentiles), and wall
times. Each norm is checked on the torch model's own predictions at the returned points.

Rows:
* fmn (jaxrobust default, ``overshoot=True``) and fmn ``overshoot=False`` (foolbox's eps update) against
  foolbox's ``LInfFMNAttack`` / ``L2FMNAttack`` / ``L1FMNAttack``;
* for L2 also against foolbox with its ``L2FMNAttack.project`` fixed (3.3.4 computes factor = norms / norms = 1,
  i.e. never projects; the fix is the paper code's ``x0 + clip_lp_norms(x - x0, norm=epsilon, p=2)``);
* ddn against ``DDNAttack``.

    PYTHONPATH=/path/to/foolbox_site python -m benchmarks.crosscheck_foolbox_min_norm [--n 200]

foolbox is not a dependency of jaxrobust: install it anywhere (e.g. ``pip install --target /tmp/fbx_site
foolbox==3.3.4 eagerpy``) and put that folder on PYTHONPATH for this script only. Writes
benchmarks/results/crosscheck_foolbox_min_norm.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.report import write_crosscheck
from benchmarks.torch_models import digits_twin
from jaxrobust.attacks.ddn import ddn_search
from jaxrobust.attacks.fmn import fmn_search
from tests.attacks import aa_helpers

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROWS = (("fmn", "linf", "foolbox"), ("fmn", "l2", "foolbox"), ("fmn", "l2", "foolbox_fixed_projection"),
        ("fmn", "l1", "foolbox"), ("ddn", "l2", "foolbox"))


def _norms(x_adv, x, norm):
  d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
  return {"linf": np.abs(d).max(1), "l2": np.linalg.norm(d, axis=1), "l1": np.abs(d).sum(1)}[norm]


def _min_norms(pred_adv, x_adv, x, y, correct, norm):
  """Per point correct clean: ||x_adv - x|| where the model misclassifies x_adv, else inf."""
  r = np.where(pred_adv != y, _norms(x_adv, x, norm), np.inf)
  return r[correct]


def _foolbox_attack(name, norm, variant):
  import foolbox as fb
  if name == "ddn":
    return fb.attacks.DDNAttack(init_epsilon=1.0, steps=100, gamma=0.05)
  cls = {"linf": fb.attacks.LInfFMNAttack, "l2": fb.attacks.L2FMNAttack, "l1": fb.attacks.L1FMNAttack}[norm]
  if variant == "foolbox_fixed_projection":
    from foolbox.attacks.gradient_descent_base import clip_lp_norms

    class FixedL2FMN(fb.attacks.L2FMNAttack):
      def project(self, x, x0, epsilon):
        return x0 + clip_lp_norms(x - x0, norm=epsilon, p=2)
    cls = FixedL2FMN
  return cls(steps=100, max_stepsize=1.0, gamma=0.05)


def _summary(r_jax, r_ref):
  both = np.isfinite(r_jax) & np.isfinite(r_ref) & (r_ref > 0)
  ratio = r_jax[both] / r_ref[both]
  q = np.percentile(ratio, [5, 50, 95]) if ratio.size else [np.nan] * 3
  return dict(success_jax=float(np.isfinite(r_jax).mean()), success_ref=float(np.isfinite(r_ref).mean()),
              median_jax=float(np.median(r_jax)), median_ref=float(np.median(r_ref)),
              ratio_p5=float(q[0]), ratio_median=float(q[1]), ratio_p95=float(q[2]),
              jax_smaller=float(np.mean(ratio < 1 - 1e-3)) if ratio.size else np.nan,
              ref_smaller=float(np.mean(ratio > 1 + 1e-3)) if ratio.size else np.nan, n_both=int(both.sum()))


def digits_setup(n: int):
  """The shared set-up of the foolbox cross-checks: (f, x, y) the JAX model and points, (fmodel, xt, yt) their
  foolbox / torch copies (NCHW), y_np, torch_pred(x_nhwc) -> labels, correct (the points correct clean)."""
  import foolbox as fb
  import torch
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  params, f = aa_helpers.train_digits("mlp")
  x, y = aa_helpers.digits_test(n)
  model = digits_twin(params, "mlp").eval()
  fmodel = fb.PyTorchModel(model, bounds=(0, 1))
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
  yt = torch.tensor(np.asarray(y)).long()
  y_np = np.asarray(y)

  def torch_pred(x_nhwc):
    with torch.no_grad():
      return model(torch.tensor(np.asarray(x_nhwc)).permute(0, 3, 1, 2).contiguous()).argmax(1).numpy()

  return f, x, y, fmodel, xt, yt, y_np, torch_pred, torch_pred(x) == y_np


def run_crosscheck(n: int = 200, seed: int = 0, rows=ROWS, verbose: bool = True) -> dict:
  import foolbox as fb
  import torch
  f, x, y, fmodel, xt, yt, y_np, torch_pred, correct = digits_setup(n)
  out_rows = []
  jax_cache = {}
  for name, norm, variant in rows:
    for overshoot in ((True, False) if name == "fmn" else (None,)):
      key = (name, norm, overshoot)
      if key not in jax_cache:
        if name == "fmn":
          fn = jax.jit(lambda f, x, y, norm=norm, ov=overshoot: fmn_search(f, x, y, norm=norm, overshoot=ov))
        else:
          fn = jax.jit(lambda f, x, y: ddn_search(f, x, y, jax.random.PRNGKey(seed)))
        t0 = time.time()
        res = fn(f, x, y)
        res.x_adv.block_until_ready()
        first = time.time() - t0
        t0 = time.time()
        fn(f, x, y).x_adv.block_until_ready()
        warm = time.time() - t0
        x_adv = np.asarray(res.x_adv)
        jax_cache[key] = (_min_norms(torch_pred(x_adv), x_adv, x, y_np, correct, norm), first, warm)
      r_jax, jax_s, jax_warm_s = jax_cache[key]
      torch.manual_seed(seed)
      t0 = time.time()
      xat = _foolbox_attack(name, norm, variant)(fmodel, xt, yt, epsilons=None)[1]
      ref_s = time.time() - t0
      xa_ref = xat.detach().permute(0, 2, 3, 1).numpy()
      r_ref = _min_norms(torch_pred(xa_ref), xa_ref, x, y_np, correct, norm)
      row = dict(attack=name, norm=norm, reference=variant,
                 jax_variant="" if overshoot is None else ("overshoot=True" if overshoot else "overshoot=False"),
                 **_summary(r_jax, r_ref), jax_s=round(jax_s, 2), jax_warm_s=round(jax_warm_s, 2),
                 foolbox_s=round(ref_s, 2))
      out_rows.append(row)
      if verbose:
        print(row, flush=True)
  meta = dict(model="mlp 64-32-10 tanh (optax Adam on the first 1200 sklearn digits)", points=f"digits[1200:{1200 + n}]",
              n=n, n_correct=int(correct.sum()), seed=seed, jax=jax.__version__, torch=torch.__version__,
              foolbox=fb.__version__,
              note="Norms over the points correct clean (inf = not broken), checked on the torch model. CPU wall-clock "
                   "on a shared 2-core machine: indicative only; jax_s includes compilation, jax_warm_s is a second call.")
  return dict(meta=meta, rows=out_rows)


def _fmt(v):
  return "inf" if not np.isfinite(v) else f"{v:.4f}"


def markdown(result: dict) -> str:
  m = result["meta"]
  lines = [f"Minimum-norm attacks on {m['n']} held-out digits ({m['n_correct']} correct clean; {m['model']}), "
           f"foolbox {m['foolbox']}.", "",
           "| attack | norm | jaxrobust | foolbox | success jax / fb | median norm jax / fb | per-point ratio jax/fb "
           "p5 / median / p95 | jax smaller / fb smaller | jax s (1st / warm) | foolbox s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    lines.append(f"| {r['attack']} | {r['norm']} | {r['jax_variant'] or 'default'} | {r['reference']} | "
                 f"{r['success_jax']:.1%} / {r['success_ref']:.1%} | {_fmt(r['median_jax'])} / {_fmt(r['median_ref'])} | "
                 f"{r['ratio_p5']:.3f} / {r['ratio_median']:.3f} / {r['ratio_p95']:.3f} | "
                 f"{r['jax_smaller']:.0%} / {r['ref_smaller']:.0%} | {r['jax_s']:.1f} / {r['jax_warm_s']:.1f} | "
                 f"{r['foolbox_s']:.1f} |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n", type=int, default=200)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", default=str(RESULTS / "crosscheck_foolbox_min_norm.json"))
  args = ap.parse_args(argv)
  res = run_crosscheck(n=args.n, seed=args.seed)
  write_crosscheck(res, markdown, args.out)


if __name__ == "__main__":
  main()
