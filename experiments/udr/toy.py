"""UDR's synthetic experiment (Bui et al. 2022, Section 5 / Fig. 3): PGD-AT vs UDR-PGD on three 2-D Gaussians.

    python -m experiments.udr.toy [--epochs 30] [--seeds 0 1 2] [--out experiments/udr/results]

Data: class 0 = A ~ N((-2, 0), 0.5 I) (10%), class 1 = B1 ~ N((2, 0), 0.5 I) (50%) and B2 ~ N((6, 0), 0.5 I) (40%);
10k train, 2k test points. Model: MLP 2-10-10-10-2 (ReLU), Adam 1e-3, batch 128, 30 epochs. Training attack: 20
Linf sign steps of 0.1 from x + U(-1, 1), eps 1; PGD-AT projects on the ball, UDR-PGD pulls with the soft ball
(``attacks.udr.soft_ball_pull``, tau = step, the released code's) and learns lambda (``methods.udr.lambda_update``:
init 1, lr 0.02, every 10 batches, mean |delta|). Both minimise CE on the attacked points (UDR-PGD*, no natural
term). Evaluation: PGD-200 (step 0.1) at eps 1 and 2, hard ball. The data are not images in [0, 1], so there is no
box clip anywhere. Writes results/toy.json and results/toy.png (decision regions and lambda over training).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrobust.attacks.udr import soft_ball_pull
from jaxrobust.losses import cross_entropy
from jaxrobust.methods.udr import init_lambda_state, lambda_update

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
CENTRES = np.array([[-2.0, 0.0], [2.0, 0.0], [6.0, 0.0]])
SHARES = np.array([0.1, 0.5, 0.4])
EPS, STEP, STEPS = 1.0, 0.1, 20


def sample(rng: np.random.Generator, n: int):
  """(n, 2) points and (n,) labels: A -> 0, B1 and B2 -> 1, covariance 0.5 I."""
  comp = rng.choice(3, size=n, p=SHARES)
  x = CENTRES[comp] + rng.normal(size=(n, 2)) * np.sqrt(0.5)
  return x.astype(np.float32), (comp > 0).astype(np.int32)


def init_mlp(key, sizes=(2, 10, 10, 10, 2)):
  keys = jax.random.split(key, len(sizes) - 1)
  return [(jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a), jnp.zeros(b)) for k, a, b in zip(keys, sizes, sizes[1:])]


def mlp(params, x):
  for w, b in params[:-1]:
    x = jax.nn.relu(x @ w + b)
  w, b = params[-1]
  return x @ w + b


def attack(params, x, y, key, *, eps, step, steps, lam=None):
  """Linf sign ascent on CE from x + U(-eps, eps): hard projection (lam None) or UDR's soft-ball pull."""
  grad = jax.grad(lambda z: jnp.sum(cross_entropy(mlp(params, z), y)))
  delta = jax.random.uniform(key, x.shape, minval=-eps, maxval=eps)

  def body(_, d):
    d = d + step * jnp.sign(grad(x + d))
    return jnp.clip(d, -eps, eps) if lam is None else soft_ball_pull(d, eps, lam, step, step)

  return x + jax.lax.fori_loop(0, steps, body, delta)


def train(method: str, x, y, seed: int, epochs: int):
  opt = optax.adam(1e-3)
  params = init_mlp(jax.random.key(seed))
  state = opt.init(params)
  lam_state = init_lambda_state(1.0)
  n_batches = len(x) // 128

  @jax.jit
  def step(params, state, lam_state, xb, yb, key, i):
    lam = lam_state["lam"] if method == "udr_pgd" else None
    xa = jax.lax.stop_gradient(attack(params, xb, yb, key, eps=EPS, step=STEP, steps=STEPS, lam=lam))
    loss, g = jax.value_and_grad(lambda p: jnp.mean(cross_entropy(mlp(p, xa), yb)))(params)
    updates, state = opt.update(g, state, params)
    dis = jnp.mean(jnp.abs(xa - xb))
    lam_state = lambda_update(lam_state, dis, i, eps=EPS, lam_lr=0.02, period=10)
    return optax.apply_updates(params, updates), state, lam_state, loss

  rng = np.random.default_rng(seed)
  lams = []
  for epoch in range(epochs):
    order = rng.permutation(len(x))
    for i in range(n_batches):
      idx = order[i * 128:(i + 1) * 128]
      key = jax.random.fold_in(jax.random.key(seed + 1000), epoch * n_batches + i)
      params, state, lam_state, _ = step(params, state, lam_state, x[idx], y[idx], key, i)
    lams.append(float(lam_state["lam"]))
  return params, lams


def robust_accuracy(params, x, y, eps, key):
  if eps == 0:
    return float(jnp.mean(jnp.argmax(mlp(params, x), -1) == y))
  xa = jax.jit(lambda p, a, b: attack(p, a, b, key, eps=eps, step=STEP, steps=200))(params, x, y)
  return float(jnp.mean(jnp.argmax(mlp(params, xa), -1) == y))


def plot(models: dict, lams: dict, x, y, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  gx, gy = np.meshgrid(np.linspace(-5, 9, 281), np.linspace(-4, 4, 161))
  grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
  for ax, (name, params) in zip(axes, models.items()):
    z = np.asarray(jax.nn.softmax(mlp(params, grid))[:, 1]).reshape(gx.shape)
    ax.contourf(gx, gy, z, levels=20, cmap="coolwarm", alpha=0.6)
    ax.contour(gx, gy, z, levels=[0.5], colors="k")
    ax.scatter(x[:600, 0], x[:600, 1], c=y[:600], cmap="coolwarm", s=4, edgecolors="none")
    ax.set_title(f"{name}: decision regions (p(class B))")
  for name, trace in lams.items():
    axes[2].plot(np.arange(1, len(trace) + 1), trace, label=name)
  axes[2].set_xlabel("epoch")
  axes[2].set_ylabel("lambda (UDR-PGD)")
  axes[2].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--epochs", type=int, default=30)
  ap.add_argument("--seeds", type=int, nargs="+", default=[0])
  ap.add_argument("--out", default=str(RESULTS))
  args = ap.parse_args(argv)
  if args.epochs < 1:
    raise SystemExit(f"error: --epochs must be >= 1; got {args.epochs}")
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  rows, first_models, first_lams = [], {}, {}
  for seed in args.seeds:
    rng = np.random.default_rng(10_000 + seed)
    xtr, ytr = sample(rng, 10_000)
    xte, yte = sample(rng, 2_000)
    for method in ("pgd_at", "udr_pgd"):
      t0 = time.time()
      params, lams = train(method, xtr, ytr, seed, args.epochs)
      row = dict(method=method, seed=seed, seconds=round(time.time() - t0, 1),
                 **{f"acc_eps{e:g}": round(100 * robust_accuracy(params, xte, yte, e, jax.random.key(7)), 2)
                    for e in (0, 1, 2)})
      if method == "udr_pgd":
        row["final_lambda"] = round(lams[-1], 4)
        first_lams.setdefault(f"seed {seed}", lams)
      if seed == args.seeds[0]:
        first_models[method] = params
      rows.append(row)
      print(row, flush=True)
  plot(first_models, first_lams, xte, yte, out / "toy.png")
  (out / "toy.json").write_text(json.dumps(dict(rows=rows, epochs=args.epochs, eps_train=EPS, step=STEP,
                                                train_steps=STEPS, eval="PGD-200 step 0.1, hard ball"), indent=2))
  print(f"wrote {out / 'toy.json'} and {out / 'toy.png'}")


if __name__ == "__main__":
  main()
