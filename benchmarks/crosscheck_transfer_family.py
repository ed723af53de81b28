"""Cross-check of jaxrobust's transfer family (``attacks/transfer_family.py``) against torchattacks 3.5.

DI2-FGSM, TI-FGSM (with and without DI), NI-FGSM, SI-NI-FGSM, VMI-FGSM and VNI-FGSM on the same weights and
points as ``crosscheck_torchattacks`` (its digits models, ``torch_models.digits_twin``): white-box robust accuracy
of both libraries, per-point agreement (the same points fooled), the largest |x_adv difference| (meaningful for the
deterministic attacks: NI, SI-NI, TI without DI) and the time of both; then the transfer use: x_adv crafted on the
source model (the MLP) and evaluated on the target (the softmax regression), by both libraries.

The randomised attacks (DI, TI with DI, VMI, VNI) draw differently in the two libraries (torchattacks one draw per
batch, jaxrobust one per example), so they are run over several seeds and agree only up to seed noise.
torchattacks' TI kernel is stacked for 3 channels: the TI rows give both sides the grey image in 3 channels and a
model that reads channel 0 (the other channels get zero gradient and are left unchanged).

    python -m benchmarks.crosscheck_transfer_family [--n 200] [--eps 0.08] [--seeds 3]

prints a markdown table and writes benchmarks/results/crosscheck_transfer_family.json.
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
from jaxrobust.attacks.registry import get_attack
from jaxrobust.attacks.transfer import transfer_attack
from tests.attacks import aa_helpers

# label -> (jaxrobust name, extra config, torchattacks class, extra torch kwargs, deterministic, 3-channel)
ATTACKS = {
    "difgsm": ("difgsm", {}, "DIFGSM", {}, False, False),
    "m-difgsm": ("difgsm", dict(decay=1.0), "DIFGSM", dict(decay=1.0), False, False),
    "tifgsm (no DI)": ("tifgsm", dict(diversity_prob=0.0), "TIFGSM", dict(diversity_prob=0.0), True, True),
    "tifgsm": ("tifgsm", {}, "TIFGSM", {}, False, True),
    "nifgsm": ("nifgsm", {}, "NIFGSM", {}, True, False),
    "sinifgsm": ("sinifgsm", {}, "SINIFGSM", {}, True, False),
    "vmifgsm": ("vmifgsm", {}, "VMIFGSM", {}, False, False),
    "vnifgsm": ("vnifgsm", {}, "VNIFGSM", {}, False, False),
}


def _torch_wrappers(torch, model):
  class FirstChannel(torch.nn.Module):  # NCHW, 3 channels -> the 1-channel model on channel 0
    def __init__(self):
      super().__init__()
      self.m = model

    def forward(self, x):
      return self.m(x[:, :1])
  return FirstChannel().eval()


def run_crosscheck(n: int = 200, eps: float = 0.08, steps: int = 10, seeds: int = 3, attacks=tuple(ATTACKS),
                   source: str = "mlp", target: str = "linear", verbose: bool = True) -> dict:
  import torch
  import torchattacks as ta
  torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
  alpha = eps / 4  # torchattacks' ratio (2/255 for 8/255)
  src_params, f = aa_helpers.train_digits(source)
  tgt_params, f_tgt = aa_helpers.train_digits(target)
  x, y = aa_helpers.digits_test(n)
  model, model_tgt = digits_twin(src_params, source), digits_twin(tgt_params, target)
  xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
  yt = torch.tensor(np.asarray(y)).long()
  f3 = jax.tree_util.Partial(lambda p, v: aa_helpers.APPLY[source](p, v[..., :1]), src_params)
  x3, xt3 = jnp.concatenate([x] * 3, -1), torch.cat([xt] * 3, 1)
  model3 = _torch_wrappers(torch, model)

  def torch_correct(m, xa):
    with torch.no_grad():
      return (m(xa).argmax(1) == yt).numpy()

  def jax_correct(fn, xa):
    return np.asarray(jnp.argmax(fn(xa), 1) == y)

  rows = []
  for label in attacks:
    name, cfg, cls, tkw, deterministic, three = ATTACKS[label]
    config = dict(eps=eps, step_size=alpha, steps=steps, **cfg)
    fn, xj = (f3, x3) if three else (f, x)
    attack = jax.jit(get_attack(name, **config))
    j_rob, t_rob, j_tr, t_tr, agree, j_s, t_s = [], [], [], [], [], [], []
    for seed in range(1 if deterministic else seeds):
      t0 = time.time()
      xa = transfer_attack(fn, xj, y, jax.random.key(seed), attack).block_until_ready()
      j_s.append(time.time() - t0)
      torch.manual_seed(seed)
      atk = getattr(ta, cls)(model3 if three else model, eps=eps, alpha=alpha, steps=steps, **tkw)
      t0 = time.time()
      xat = atk(xt3 if three else xt, yt)
      t_s.append(time.time() - t0)
      if three:
        xa, xat = xa[..., :1], xat[:, :1]
      jc, tc = jax_correct(f, xa), torch_correct(model, xat)
      j_rob.append(jc.mean())
      t_rob.append(tc.mean())
      agree.append(np.mean(jc == tc))
      j_tr.append(jax_correct(f_tgt, xa).mean())
      t_tr.append(torch_correct(model_tgt, xat).mean())
      if seed == 0:
        diff = float(np.max(np.abs(np.asarray(xa) - xat.permute(0, 2, 3, 1).numpy())))
    t0 = time.time()
    attack(fn, xj, y, jax.random.key(0)).block_until_ready()
    warm = time.time() - t0
    row = dict(attack=label, name=name, torch_class=cls, deterministic=deterministic, seeds=len(j_rob),
               jax=float(np.mean(j_rob)), torch=float(np.mean(t_rob)), jax_sd=float(np.std(j_rob)),
               torch_sd=float(np.std(t_rob)), diff_pp=round(100 * float(np.mean(j_rob) - np.mean(t_rob)), 2),
               agree=float(np.mean(agree)), max_abs_diff=diff, transfer_jax=float(np.mean(j_tr)),
               transfer_torch=float(np.mean(t_tr)), jax_s=round(j_s[0], 2), jax_warm_s=round(warm, 3),
               torch_s=round(float(np.mean(t_s)), 3))
    rows.append(row)
    if verbose:
      print(row, flush=True)
  with torch.no_grad():
    clean_torch = float((model(xt).argmax(1) == yt).float().mean())
  meta = dict(source=f"{source} (aa_helpers.train_digits)", target=f"{target} (aa_helpers.train_digits)",
              points=f"digits[1200:{1200 + n}]", n=n, eps=eps, alpha=alpha, steps=steps, seeds=seeds,
              clean_jax=aa_helpers.accuracy(f, x, y), clean_torch=clean_torch,
              clean_target=aa_helpers.accuracy(f_tgt, x, y), jax=jax.__version__, torch=torch.__version__,
              torchattacks=ta.__version__,
              note="CPU wall-clock on a shared 2-core machine: indicative only. jax_s: first call (compilation "
                   "included), jax_warm_s: a second call; torch_s: mean over seeds. agree: fraction of points both "
                   "libraries leave correct / fool alike. Randomised rows: mean over seeds (sd over seeds).")
  return dict(meta=meta, rows=rows)


def markdown(result: dict) -> str:
  m = result["meta"]
  lines = [f"White-box on the source ({m['source']}; clean {m['clean_jax']:.1%}) and transfer to the target "
           f"({m['target']}; clean {m['clean_target']:.1%}), {m['n']} held-out digits, eps {m['eps']}, "
           f"alpha {m['alpha']}, {m['steps']} steps; randomised rows: mean (sd) over {m['seeds']} seeds.", "",
           "| attack | robust acc jaxrobust | torchattacks | diff (pp) | points agree | max abs x diff | "
           "transfer acc jaxrobust | torchattacks | jax s (1st / warm) | torch s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in result["rows"]:
    sd = "" if r["deterministic"] else f" ({r['jax_sd']:.1%})"
    tsd = "" if r["deterministic"] else f" ({r['torch_sd']:.1%})"
    xd = f"{r['max_abs_diff']:.1e}" if r["deterministic"] else "(random)"
    lines.append(f"| {r['attack']} | {r['jax']:.1%}{sd} | {r['torch']:.1%}{tsd} | {r['diff_pp']:+.1f} | "
                 f"{r['agree']:.1%} | {xd} | {r['transfer_jax']:.1%} | {r['transfer_torch']:.1%} | "
                 f"{r['jax_s']:.1f} / {r['jax_warm_s']:.2f} | {r['torch_s']:.2f} |")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--n", type=int, default=200)
  ap.add_argument("--eps", type=float, default=0.08)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--seeds", type=int, default=3)
  ap.add_argument("--out", default=str(RESULTS / "crosscheck_transfer_family.json"))
  args = ap.parse_args(argv)
  res = run_crosscheck(n=args.n, eps=args.eps, steps=args.steps, seeds=args.seeds)
  write_crosscheck(res, markdown, args.out)


if __name__ == "__main__":
  main()
