"""Cross-check of jaxrobust's APGD / APGD-T / FAB-T / Square / AutoAttack against torchattacks 3.5.

APGD and APGD-T (Croce & Hein 2020a), FAB-T (Croce & Hein 2020b), Square (Andriushchenko et al. 2020)
and their AutoAttack cascade (Croce & Hein 2020a) against torchattacks (Kim 2020).

Both sides attack the same model (a 64-32-10 tanh MLP trained with optax on sklearn's 8x8 digits, ported weight
for weight to torch, NCHW -> NHWC before flattening) on the same held-out points with AutoAttack's original
parameters: APGD n_iter 100, rho 0.75, 1 restart; APGD-T 9 targets; FAB-T 9 targets, 100 iterations,
alpha_max 0.1, eta 1.05, beta 0.9; Square 5000 queries, p_init 0.8, no schedule rescaling; AutoAttack
'standard' = the four in cascade (torchattacks' own ``AutoAttack`` class uses 10-step APGD/FAB and a rescaled
Square schedule, so the torch cascade is built with ``MultiAttack`` from the components configured as above).
Random starts differ between the two libraries, so robust accuracies agree only up to sampling noise.

    python -m benchmarks.crosscheck_torchattacks [--n 200] [--norms linf l2] [--square-queries 5000]

prints a markdown table and writes benchmarks/results/crosscheck_torchattacks.json. The digits models are the
attack tests' (``tests/attacks/aa_helpers.py``); their torch twins are ``torch_models.digits_twin``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.report import write_crosscheck
from benchmarks.torch_models import digits_twin
from jaxrobust import threat
from jaxrobust.attacks import apgd as apgd_lib
from jaxrobust.attacks import autoattack as aa_lib
from jaxrobust.attacks import fab as fab_lib
from jaxrobust.attacks import square as square_lib
from tests.attacks import aa_helpers

RESULTS = pathlib.Path(__file__).resolve().parent / "results"

DEFAULT_EPS = {"linf": 0.08, "l2": 0.45}
ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square", "autoattack")


def _jax_attack(name, f, x, y, key, eps, norm, square_queries):
  if name == "apgd-ce":
    return apgd_lib.apgd(f, x, y, key, eps=eps, norm=norm, loss="ce", n_iter=100, n_restarts=1)
  if name == "apgd-t":
    return apgd_lib.apgd_targeted(f, x, y, key, eps=eps, norm=norm, n_iter=100, n_target_classes=9)
  if name == "fab-t":
    return fab_lib.fab_targeted(f, x, y, key, eps=eps, norm=norm, n_iter=100, n_target_classes=9)
  if name == "square":
    return square_lib.square(f, x, y, key, eps=eps, norm=norm, n_queries=square_queries, p_init=0.8)
  return aa_lib.run_autoattack(f, x, y, key, eps=eps, norm=norm, version="standard",
                               attack_kwargs={"square": {"n_queries": square_queries}})[0]


def _torch_attack(name, model, eps, norm, square_queries, seed):
  import torchattacks as ta
  tn = {"linf": "Linf", "l2": "L2"}[norm]
  parts = {
      "apgd-ce": lambda: ta.APGD(model, norm=tn, eps=eps, steps=100, n_restarts=1, seed=seed, loss="ce", rho=0.75),
      "apgd-t": lambda: ta.APGDT(model, norm=tn, eps=eps, steps=100, n_restarts=1, seed=seed, rho=0.75,
                                 n_classes=10),
      "fab-t": lambda: ta.FAB(model, norm=tn, eps=eps, steps=100, n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
                              seed=seed, multi_targeted=True, n_classes=10),
      "square": lambda: ta.Square(model, norm=tn, eps=eps, n_queries=square_queries, n_restarts=1, p_init=0.8,
                                  seed=seed, loss="margin", resc_schedule=False),
  }
  if name == "autoattack":
    return ta.MultiAttack([parts[a]() for a in ("apgd-ce", "apgd-t", "fab-t", "square")])
  return parts[name]()


def run_crosscheck(n: int = 200, norms=("linf",), eps=None, square_queries: int = 5000, attacks=ATTACKS,
                   kind: str = "mlp", seed: int = 0, verbose: bool = True) -> dict:
  """Returns {'meta': ..., 'rows': [{attack, norm, eps, jax, torch, diff_pp, jax_s, torch_s}, ...]}."""
  import torch
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  params, f = aa_helpers.train_digits(kind)
  x, y = aa_helpers.digits_test(n)
  model = digits_twin(params, kind)
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
  yt = torch.tensor(np.asarray(y)).long()
  with torch.no_grad():
    clean_torch = float((model(xt).argmax(1) == yt).float().mean())
  clean_jax = aa_helpers.accuracy(f, x, y)
  eps = dict(DEFAULT_EPS, **(eps or {}))
  rows = []
  for norm in norms:
    for name in attacks:
      e = eps[norm]
      t0 = time.time()
      xa = _jax_attack(name, f, x, y, jax.random.PRNGKey(seed), e, norm, square_queries)
      xa.block_until_ready()
      jax_s = time.time() - t0
      t0 = time.time()  # a second call: the compiled programs are cached on the model function
      _jax_attack(name, f, x, y, jax.random.PRNGKey(seed), e, norm, square_queries).block_until_ready()
      jax_warm_s = time.time() - t0
      jax_acc = aa_helpers.accuracy(f, xa, y)
      jax_dist = float(jnp.max(threat.per_example_norm(xa - x, norm)))
      t0 = time.time()
      atk = _torch_attack(name, model, e, norm, square_queries, seed)
      xat = atk(xt, yt)
      torch_s = time.time() - t0
      with torch.no_grad():
        torch_acc = float((model(xat).argmax(1) == yt).float().mean())
      row = dict(attack=name, norm=norm, eps=e, jax=round(jax_acc, 4), torch=round(torch_acc, 4),
                 diff_pp=round(100 * (jax_acc - torch_acc), 2), jax_s=round(jax_s, 2), jax_warm_s=round(jax_warm_s, 2),
                 torch_s=round(torch_s, 2),
                 jax_max_dist=round(jax_dist, 5))
      rows.append(row)
      if verbose:
        print(row, flush=True)
  meta = dict(model=f"{kind} 64-32-10 tanh (optax Adam on the first 1200 sklearn digits)" if kind == "mlp"
              else f"{kind} softmax regression", points=f"digits[1200:{1200 + n}]", n=n, clean_jax=clean_jax,
              clean_torch=clean_torch, square_queries=square_queries, seed=seed,
              jax=jax.__version__, torch=torch.__version__, torchattacks=__import__("torchattacks").__version__,
              note="CPU wall-clock on a shared 2-core machine (other jobs running): indicative only. jax_s is the "
                   "first call (compilation included unless already cached: the AutoAttack row reuses the "
                   "components' programs); jax_warm_s a second call. Random starts differ between libraries.")
  return dict(meta=meta, rows=rows)


def markdown(result: dict) -> str:
  m = result["meta"]
  lines = [f"Robust accuracy on {m['n']} held-out digits ({m['model']}; clean {m['clean_jax']:.1%}), "
           f"Square {m['square_queries']} queries.", "",
           "| attack | norm | eps | jaxrobust | torchattacks | diff (pp) | jax s (1st call / warm) | torch s |",
           "|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    lines.append(f"| {r['attack']} | {r['norm']} | {r['eps']} | {r['jax']:.1%} | {r['torch']:.1%} | "
                 f"{r['diff_pp']:+.1f} | {r['jax_s']:.1f} / {r.get('jax_warm_s', float('nan')):.1f} | "
                 f"{r['torch_s']:.1f} |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n", type=int, default=200)
  ap.add_argument("--norms", nargs="+", default=["linf", "l2"])
  ap.add_argument("--square-queries", type=int, default=5000)
  ap.add_argument("--kind", default="mlp", choices=["mlp", "linear"])
  ap.add_argument("--out", default=str(RESULTS / "crosscheck_torchattacks.json"))
  args = ap.parse_args(argv)
  res = run_crosscheck(n=args.n, norms=tuple(args.norms), square_queries=args.square_queries, kind=args.kind)
  write_crosscheck(res, markdown, args.out)


if __name__ == "__main__":
  main()
