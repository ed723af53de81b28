"""Multi-targeted PGD (mPGD): one targeted PGD run toward every class (Gowal et al. 2019).

Gowal, Uesato, Qin, Huang, Mann and Kohli 2019, "An Alternative Surrogate Loss for PGD-based
Adversarial Testing" (arXiv:1910.09338), attack every target class t != y on its own and keep the
worst case; ADR (Bui et al. 2020, "Improving Adversarial Robustness by Enforcing Local and Global
Compactness", ECCV) evaluates with the same protocol on cross-entropy, every class included
(``eval_multi_targeted.py``: 20 steps, eps 8/255, step 2/255, random start). The "mul-A" attack of
CCE (Bui et al. 2021, "Improving Ensemble Robustness by Collaboratively Promoting and Demoting
Adversarial Robustness": a targeted attack toward every class, k = 20, a point broken when any
target succeeds) is the same attack with its own steps and step size.

For every target t in T_i (all C classes, or the C - 1 classes t != y_i) and restart r:

    x^{t,r}_0     = clip_[0,1](x + U(-eps, eps)^d)                      (the norm's random start)
    x^{t,r}_{s+1} = clip_[0,1]( Pi_eps( x^{t,r}_s - alpha * d(grad_x L_t(x^{t,r}_s)) ) )
    L_t(x')       = CE(h(x'), t)             (loss='ce', minimised: move toward class t)
                  = z_y(x') - z_t(x')        (loss='margin', Gowal et al.: maximise z_t - z_y)

a point is robust only if every run is still classified as y. Per example the attack returns one
run: the misclassified run with the smallest true-class margin z_y - max_{j != y} z_j if any run is
misclassified, else the run with the smallest margin (ties: the lowest target, then restart), so
the returned point is misclassified exactly when some run is. Each run is ``pgd.pgd`` with
``targeted=True``; the run toward class t, restart r, of example i draws its start from
``fold_in(k_i, t)`` (``fold_in(fold_in(k_i, t), r)`` when restarts > 1), with k_i the example's key
(``per_example.example_keys``), so batch size and the set of targets change no run.

The C x R runs are one XLA program, laid out by ``layout``:
  'loop':  a ``lax.fori_loop`` over the runs (one B-row PGD at a time, the memory of one run);
  'batch': the runs fold into the batch axis (one PGD loop on C*R*B examples);
  'vmap':  ``jax.vmap`` of the PGD loop over the runs.
All three return the same points. 'loop' is the default: on CPU it was as fast as the others (the
fastest median) with a ninth of their memory (BENCHMARKS.md, section 1c).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks.model_calls import check_num_classes, num_classes, validate
from jaxrobust.attacks.per_example import example_keys, fold_keys, per_example, select
from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.types import Array, LogitsFn

LAYOUTS = ("loop", "batch", "vmap")
LOSSES = ("ce", "margin")


def run_targets(y: Array, k: int, include_true_class: bool = True) -> Array:
  """The target classes, (n_targets, B) int32: row j is class j for every example (all k classes), or,
  without the true class, the j-th class t != y_i (j + [j >= y_i])."""
  if include_true_class:
    return jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[:, None], (k, y.shape[0]))
  j = jnp.arange(k - 1, dtype=jnp.int32)[:, None]
  return j + (j >= y[None, :].astype(jnp.int32)).astype(jnp.int32)


def run_keys(keys: Array, targets: Array, restarts: int = 1) -> Array:
  """Per-run, per-example keys (n_targets * restarts, B): fold_in(k_i, t) for target t (restart r > 1 runs:
  fold_in(fold_in(k_i, t), r)), run index = target row * restarts + r. keys: (B,) per-example keys."""
  per_target = jax.vmap(jax.vmap(jax.random.fold_in), in_axes=(None, 0))(keys, targets.astype(jnp.uint32))
  if restarts == 1:
    return per_target
  runs = jax.vmap(lambda kt: jnp.stack([fold_keys(kt, r) for r in range(restarts)]))(per_target)
  return runs.reshape((-1,) + runs.shape[2:])


def _margin_loss(y_true: Array) -> losses_lib.AttackLoss:
  """z_y - z_t per example (PGD's targeted mode minimises it); y_true: the true labels of the rows."""
  def loss(logits, t, ref_logits=None):
    z = lambda c: jnp.take_along_axis(logits, c[:, None].astype(jnp.int32), axis=1)[:, 0]  # noqa: E731
    return z(y_true) - z(t)
  return losses_lib.AttackLoss(loss, needs_reference=False)


def _better(fooled, margin, best_fooled, best_margin):
  """A run beats the best so far: it is misclassified and the best is not, or both agree and its margin is
  strictly smaller (so the earlier run wins a tie)."""
  return (fooled & ~best_fooled) | ((fooled == best_fooled) & (margin < best_margin))


def multi_targeted_pgd(logits_fn: LogitsFn, x: Array, y: Array, key, *, eps, step_size=None, steps: int = 20,
                       norm="linf", loss: str = "ce", include_true_class: bool = True, restarts: int = 1,
                       layout: str = "loop", unroll: int | bool | None = None) -> Array:
  """Multi-targeted PGD. Returns x_adv with the shape and dtype of x: per example the chosen run.

  Args:
    logits_fn: pure ``x -> logits (B, C)``.
    x: (B, ...) float images in [0, 1]; y: (B,) int true labels.
    key: one PRNG key (example i uses fold_in(key, i)) or a (B,) batch of per-example keys.
    eps, step_size: scalar or (B,); step_size None uses PGD's 2.5 eps / steps (ADR: eps 8/255, step 2/255).
    steps: PGD iterations per run (static; ADR and CCE's mul-A use 20).
    norm: 'linf', 'l2' or 'l1' (``threat``); the start is that norm's random start.
    loss: 'ce' (minimise CE(h(x'), t)) or 'margin' (maximise z_t - z_y; needs include_true_class=False,
      its gradient vanishes for t = y).
    include_true_class: run toward all C classes (ADR; the run toward y can only fool through its start)
      or toward the C - 1 classes t != y.
    restarts: random starts per target (static); every run counts.
    layout: 'loop', 'batch' or 'vmap': how the runs form one program (module docstring); same result.
    unroll: the PGD loop's ``lax.fori_loop`` unroll factor (``pgd``).
  """
  if loss not in LOSSES:
    raise ValueError(f"unknown mPGD loss {loss!r}; expected one of {LOSSES}")
  if layout not in LAYOUTS:
    raise ValueError(f"unknown mPGD layout {layout!r}; expected one of {LAYOUTS}")
  if int(steps) != steps or steps < 0 or int(restarts) != restarts or restarts < 1:
    raise ValueError(f"need steps >= 0 and restarts >= 1; got steps={steps}, restarts={restarts}")
  if loss == "margin" and include_true_class:
    raise ValueError("loss='margin' (z_t - z_y) is 0 for t = y: pass include_true_class=False")
  norm = threat.canonical_norm(norm)
  k = num_classes(logits_fn, x)
  validate(x, y, k, eps=eps, step_size=step_size)
  check_num_classes(k, 2, "mPGD")
  if step_size is None:
    step_size = 2.5 * jnp.asarray(eps, x.dtype) / max(int(steps), 1)
  b, restarts = x.shape[0], int(restarts)
  targets = run_targets(y, k, include_true_class)                 # (n_targets, B)
  run_t = jnp.repeat(targets, restarts, axis=0)                   # (n_runs, B), run = target row * R + r
  keys = run_keys(example_keys(key, b), targets, restarts)        # (n_runs, B)
  n_runs = run_t.shape[0]

  def attack_loss(y_true):
    return _margin_loss(y_true) if loss == "margin" else "ce"

  def one_run(t, ks):
    return pgd(logits_fn, x, t, ks, eps=eps, step_size=step_size, steps=steps, norm=norm,
               loss=attack_loss(y), init="uniform", targeted=True, unroll=unroll)

  def scores(xa, y_rows):
    logits = logits_fn(xa)
    return losses_lib.margin(logits, y_rows), ~losses_lib.is_correct(logits, y_rows)

  if layout == "loop":
    def body(r, carry):
      best_x, best_m, best_f = carry
      xa = one_run(run_t[r], keys[r])
      m, f = scores(xa, y)
      better = _better(f, m, best_f, best_m)
      return select(better, xa, best_x), jnp.where(better, m, best_m), best_f | f
    init = (x, jnp.full((b,), jnp.inf, x.dtype), jnp.zeros((b,), bool))
    return jax.lax.fori_loop(0, n_runs, body, init)[0]

  if layout == "vmap":
    runs = jax.vmap(one_run)(run_t, keys)                         # (n_runs, B, ...)
    flat = runs.reshape((n_runs * b,) + x.shape[1:])
  else:  # 'batch': fold the runs into the batch axis
    tile = lambda v: jnp.tile(per_example(v, x), n_runs)  # noqa: E731  (scalar or (B,) -> (n_runs * B,))
    xr = jnp.tile(x, (n_runs,) + (1,) * (x.ndim - 1))
    yr = jnp.tile(y, n_runs)
    flat = pgd(logits_fn, xr, run_t.reshape(-1), keys.reshape((-1,) + keys.shape[2:]), eps=tile(eps),
               step_size=tile(step_size), steps=steps, norm=norm, loss=attack_loss(yr), init="uniform",
               targeted=True, unroll=unroll)
    runs = flat.reshape((n_runs, b) + x.shape[1:])
  m, f = scores(flat, jnp.tile(y, n_runs))
  m, f = m.reshape(n_runs, b), f.reshape(n_runs, b)
  any_fooled = jnp.any(f, axis=0)
  # the smallest margin among the misclassified runs if there is one, else among all (argmin: first of ties)
  pick = jnp.argmin(jnp.where(f | ~any_fooled[None, :], m, jnp.inf), axis=0)
  return jnp.take_along_axis(runs, pick.reshape((1, b) + (1,) * (x.ndim - 1)), axis=0)[0]


_OWN_TARGETS = ("mPGD runs a targeted PGD toward every class and keeps the best, so it has no single target to "
                "choose; for one chosen target use get_attack('pgd', eps=..., target=...)")

REGISTRY = {
    "mpgd": AttackInfo(configured(multi_targeted_pgd), norms=("linf", "l2", "l1"), own_targets=_OWN_TARGETS,
                       summary="multi-targeted PGD: a targeted PGD run toward every class, robust only if all fail "
                               "(Gowal et al. 2019; Bui et al. 2020)"),
    "multi_targeted_pgd": AttackInfo(configured(multi_targeted_pgd), norms=("linf", "l2", "l1"),
                                     own_targets=_OWN_TARGETS,
                                     summary="alias of mpgd"),
}
