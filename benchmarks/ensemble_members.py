"""Ensemble member axis: PGD-10 on an M-member ensemble, and an ensemble train step, against M (BENCHMARKS.md,
"Ensembles: the member axis").

    python -m benchmarks.ensemble_members --json benchmarks/results/ensemble_members.json

For M = 1..4 members of one architecture (random weights), batch 128, the attack is PGD-10 (eps 8/255, step
2/255) on the ensemble prediction log((1/M) sum_m softmax(z_m)) (what CCE / TA-MOO evaluate). Contenders, all
timed interleaved in one run (``benchmarks.timing.measure``):

  jax_<layout>   the library's ``Ensemble`` model (``get_model(name, members=M, ensemble_layout=layout)``) for
                 each member-axis layout: vmap, unrolled, scan ('auto' picks unrolled on CPU, vmap elsewhere)
  jax_loop       M single library models called one after the other inside the same jitted attack
  torch_loop     PyTorch eager: a loop over M torch twins (same weights) of the single model, torchattacks'
                 PGD loop on log of the mean probability

With ``--cce`` also one CCE train step (RM: every member's own PGD-10 in one program, the promoting / demoting
loss), against a PyTorch loop with the same loss (``torch_cce_step``). With ``--step`` also one train step of the ensemble (PGD-AT on the ensemble prediction, the TA-MOO
baseline's loss CE(log p_en(x_adv), y); SGD), JAX layouts against a PyTorch loop over members.
Every JAX output is checked against jax_loop's (max |diff| reported).
"""

import jaxrobust  # noqa: F401  (applies jaxrobust.xla_cpu before JAX starts)

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import report as report_lib
from benchmarks import timing
from benchmarks.torch_models import build_torch_model, optional_torch, port_flax_to_torch
from jaxrobust import models
from jaxrobust.attacks.pgd import pgd
from jaxrobust.models.ensemble import combine_member_logits

EPS, STEP, STEPS = 8 / 255, 2 / 255, 10
SHAPES = {"small_cnn": (28, 28, 1), "resnet20": (32, 32, 3)}


def torch_ensemble_pgd(torch, nets, x, y):
  """torchattacks' PGD loop (as ``torch_steps.pgd_linf``) on log of the members' mean probability."""
  def model(z):
    return torch.logsumexp(torch.stack([torch.log_softmax(n(z), -1) for n in nets]), 0) - np.log(len(nets))
  from benchmarks.torch_steps import pgd_linf
  return pgd_linf(model, x, y, eps=EPS, step_size=STEP, steps=STEPS)


def torch_ensemble_step(torch, nets, opt, x, y):
  for n in nets:
    n.eval()
  x_adv = torch_ensemble_pgd(torch, nets, x, y)
  for n in nets:
    n.train()
  logp = torch.logsumexp(torch.stack([torch.log_softmax(n(x_adv), -1) for n in nets]), 0) - np.log(len(nets))
  loss = torch.nn.functional.nll_loss(logp, y)
  opt.zero_grad()
  loss.backward()
  opt.step()


def torch_cce_step(torch, nets, opt, x, y, lam_pm=1.0, lam_dm=1.0):
  """CCE (Bui et al. 2021), thesis form: each member's own PGD-10, then per member n
  CE(x) + CE(x_a^n) + 1/(N-1) sum_{i != n} [lam_pm s CE(x_a^i) - lam_dm (1 - s) H(x_a^i)], s = p^n_y(x_a^i) detached."""
  from benchmarks.torch_steps import pgd_linf
  import torch.nn.functional as F
  for n in nets:
    n.eval()
  x_adv = [pgd_linf(n, x, y, eps=EPS, step_size=STEP, steps=STEPS) for n in nets]
  for n in nets:
    n.train()
  loss, m = 0.0, len(nets)
  for j, net in enumerate(nets):
    loss = loss + F.cross_entropy(net(x), y) + F.cross_entropy(net(x_adv[j]), y)
    for i in range(m):
      if i == j:
        continue
      z = net(x_adv[i])
      logp = F.log_softmax(z, -1)
      s = logp.exp().gather(1, y[:, None])[:, 0].detach()
      ce = F.nll_loss(logp, y, reduction="none")
      h = -(logp.exp() * logp).sum(-1)
      loss = loss + (lam_pm * s * ce - lam_dm * (1 - s) * h).mean() / (m - 1)
  opt.zero_grad()
  loss.backward()
  opt.step()


def row(model_name, m, batch, layouts, with_torch, with_step, repeats, log, with_cce=False, with_pgd=True):
  shape = SHAPES[model_name]
  kw = dict(width=16) if model_name == "resnet20" else {}
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((batch,) + shape, dtype=np.float32))
  y = jnp.asarray(rng.integers(0, 10, batch).astype(np.int32))
  key = jax.random.key(1)
  single = models.get_model(model_name, 10, **kw)
  ens0 = models.Ensemble(member=single, num_members=m, layout="vmap")  # also M = 1
  variables = models.init_model(ens0, jax.random.key(0), shape)
  members = [models.member_variables(variables, i) for i in range(m)]
  single_apply = models.make_apply(single)

  variants, outputs, info = [], {}, {}

  def add(name, fn, args):
    compiled, ci = timing.aot_compile(fn, *args)
    info[name] = {"compile_s": ci["compile_total_s"],
                  "peak_estimate_mib": ci["memory"].get("peak_estimate_bytes", 0) / 2**20}
    outputs[name] = np.asarray(jax.tree.leaves(compiled(*args))[0])
    log(f"  {name}: compiled in {ci['compile_total_s']:.2f} s")
    variants.append(timing.Variant(name, "jax", lambda c=compiled: jax.block_until_ready(c(*args)), warmup=1))

  def loop_logits(vs, z):
    return combine_member_logits(jnp.stack([single_apply(v, z) for v in vs]))
  if with_cce:
    import optax
    from jaxrobust.methods.registry import get_method
    from jaxrobust.train.state import create_train_state
    from jaxrobust.train.step import make_train_step
    tx_cce = optax.sgd(0.01, momentum=0.9)
    cce = get_method("cce", mode="rm", eps=EPS, step_size=STEP, steps=STEPS)
    batch_c = {"image": x, "label": y, "index": jnp.arange(batch, dtype=jnp.int32)}
    for layout in layouts:
      module = ens0.clone(layout=layout)
      step = make_train_step(module, cce, tx_cce, steps_per_epoch=100, num_classes=10)
      add(f"jax_{layout}_cce", lambda s, b, step=step: step(s, b)[0].params,
          (create_train_state(variables, tx_cce, jax.random.key(2)), batch_c))
  if not with_pgd:
    layouts_pgd = []
  else:
    layouts_pgd = layouts
    add("jax_loop", lambda vs, x, y, k: pgd(jax.tree_util.Partial(loop_logits, vs), x, y, k, eps=EPS,
                                          step_size=STEP, steps=STEPS), (members, x, y, key))
  for layout in layouts_pgd:
    apply = models.make_apply(ens0.clone(layout=layout))
    add(f"jax_{layout}", lambda v, x, y, k, apply=apply: pgd(jax.tree_util.Partial(apply, v), x, y, k, eps=EPS,
                                                              step_size=STEP, steps=STEPS), (variables, x, y, key))
  if with_step:
    import optax
    from jaxrobust.methods.registry import get_method
    from jaxrobust.train.state import create_train_state
    from jaxrobust.train.step import make_train_step
    tx = optax.sgd(0.01, momentum=0.9)
    method = get_method("pgd_at", eps=EPS, step_size=STEP, steps=STEPS)
    batch_d = {"image": x, "label": y, "index": jnp.arange(batch, dtype=jnp.int32)}
    for layout in layouts:
      module = ens0.clone(layout=layout)
      step = make_train_step(module, method, tx, steps_per_epoch=100, num_classes=10)
      state = create_train_state(variables, tx, jax.random.key(2))
      add(f"jax_{layout}_step", lambda s, b, step=step: step(s, b)[0].params, (state, batch_d))
  torch = optional_torch() if with_torch else None
  if torch is not None:
    nets = []
    for v in members:
      net = build_torch_model(model_name, shape, 10, **kw)
      port_flax_to_torch(v, net)
      nets.append(net.eval())
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(np.asarray(y).astype(np.int64))
    if with_pgd:
      variants.append(timing.Variant("torch_loop", "torch", lambda: torch_ensemble_pgd(torch, nets, xt, yt),
                                     warmup=1))
    if with_cce and m > 1:
      opt_c = torch.optim.SGD([p for n in nets for p in n.parameters()], lr=0.01, momentum=0.9)
      variants.append(timing.Variant("torch_loop_cce", "torch", lambda: torch_cce_step(torch, nets, opt_c, xt, yt),
                                     warmup=1))
    if with_step:
      opt = torch.optim.SGD([p for n in nets for p in n.parameters()], lr=0.01, momentum=0.9)
      variants.append(timing.Variant("torch_loop_step", "torch",
                                     lambda: torch_ensemble_step(torch, nets, opt, xt, yt), warmup=1))
  ref = outputs.get("jax_loop")
  timing.measure(variants, repeats=repeats, warmup=1, log=log)
  rows = []
  for v in variants:
    rec = timing.variant_record(v, batch)
    rec.update(info.get(v.name, {}), members=m, model=model_name)
    if ref is not None and v.name in outputs and not v.name.endswith(("_step", "_cce")):
      rec["max_abs_diff_to_jax_loop"] = float(np.abs(outputs[v.name] - ref).max())
    rows.append(rec)
  return rows


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="small_cnn", choices=sorted(SHAPES))
  p.add_argument("--members", default="1,2,3,4")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--layouts", default="vmap,unrolled,scan")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--step", action="store_true", help="also time one ensemble PGD-AT train step")
  p.add_argument("--cce", action="store_true", help="also time one CCE train step (RM; PGD-10 per member)")
  p.add_argument("--no-pgd", action="store_true", help="skip the PGD-10 attack rows")
  p.add_argument("--json", default=None)
  a = p.parse_args(argv)
  t0 = time.perf_counter()
  rows = []
  for m in [int(v) for v in a.members.split(",")]:
    print(f"[members {m}]", flush=True)
    rows += row(a.model, m, a.batch, a.layouts.split(","), not a.no_torch, a.step, a.repeats, print,
                with_cce=a.cce, with_pgd=not a.no_pgd)
  print(f"\n{a.model}, batch {a.batch}, PGD-{STEPS} on the ensemble; load average {report_lib.load_average()}, "
        f"{time.perf_counter() - t0:.0f} s")
  print("| members | contender | median s | images/s | compile s | vs torch_loop | max diff |")
  print("|---:|---|---:|---:|---:|---:|---:|")
  for r in rows:
    torch_name = ("torch_loop_step" if r["name"].endswith("_step") else
                  "torch_loop_cce" if r["name"].endswith("_cce") else "torch_loop")
    t = next((q for q in rows if q["members"] == r["members"] and q["name"] == torch_name and "median_s" in q), None)
    ratio = f"{t['median_s'] / r['median_s']:.2f}x" if t and "median_s" in r else ""
    print(f"| {r['members']} | {r['name']} | {r.get('median_s', float('nan')):.3f} | "
          f"{r.get('items_per_s', float('nan')):.0f} | {r.get('compile_s', float('nan')):.2f} | {ratio} | "
          f"{r.get('max_abs_diff_to_jax_loop', float('nan')):.1e} |")
  if a.json:
    record = {"command": "python -m benchmarks.ensemble_members " + " ".join(argv or []), "config": vars(a),
              "machine": report_lib.machine_info(optional_torch()), "rows": rows}
    with open(a.json, "w") as f:
      json.dump(record, f, indent=1)


if __name__ == "__main__":
  import sys
  main(sys.argv[1:])
