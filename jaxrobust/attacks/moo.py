"""Multi-objective Linf attacks: Uniform, MOO (MGDA), TA-MOO, MinMax, PCGrad, CAGrad, HVM
(Bui et al. 2023, TMLR, "Generating adversarial examples with task oriented multi-objective optimization").

Bui et al. 2023 (TMLR), "Generating adversarial examples with task oriented multi-objective optimization":
m tasks f_1..f_m of one perturbation delta, each with a goal indicator I_i (achieved or not), are maximised
jointly. Per sample and outer step t (thesis order, Algorithm 1):

    g_i = grad_delta f_i(delta_t),  Q_ij = g_i . g_j,  A_t = {i : I_i(delta_t) = 1}
    w_t = solver(Q, f, A_t)                                        (``moo_weights``; warm-started state)
    delta_{t+1} = Pi_{eps-ball, box}(delta_t + eta sign(sum_i w_ti g_i))

Weightings: 'uniform' (w = 1/m: PGD on sum_i f_i), 'mgda' (MOO: softmax GD on w^T Q w, Eq. 2), 'tamoo'
(+ lambda Omega, Theorem 1 / Algorithm 1), 'minmax' (Wang et al. 2021), 'pcgrad' (Yu et al. 2020), 'cagrad'
(Liu et al. 2021), 'hvm' (sum_i log(f_i - nadir)). 'uniform' with tasks='ens' is PGD on the *sum of the
member losses* (the reference's ``PGD_Linf_ENS``), not PGD on the averaged ensemble (that one is
``pgd`` on ``ensemble.ensemble_logits_fn``). ``success_rates`` gives A-i / A-Avg / A-All from ``MooInfo.achieved``.

Task sets (``tasks``):
* 'ens': ``logits_fn(x) -> (M, B, K)`` member logits (e.g. ``lambda x: jax.vmap(lambda p: apply(p, x))(stacked)``);
  f_i = L(z_i(x + delta), y); achieved: argmax z_i != y (targeted: == y).
* 'uni': one model, groups of ``group_size`` consecutive inputs share one delta (``universal.Groups``);
  f_k = L(h(x_k + delta), y_k); B must be a multiple of group_size. Weights, keys, eps and the returned
  diagnostics are per group.
* 'eot': one model and the transformations of ``transforms.py`` (``eot.eot_task_losses``), one factor p per
  example and step ('stochastic') or p = 1 ('deterministic').
  UNI / EoT goal ('goal'): 'clean' (thesis) pred != the clean prediction argmax h(x), 'label' (code) pred != y.

Per-sample weights: g_i comes from grad_delta sum_b f_bi (one forward, m vjps), whose row b is grad f_bi as long
as the model treats samples independently (eval mode), so one sample's weights never read another's.

Thesis vs reference code, as options: ``init='one_sided'`` (delta_0 = eps U[0, 1), the code's
MOO / TA-MOO / MinMax start), ``update_order='code'`` (the step uses the weights of the previous iterate: the
first step is uniform), ``inner_steps=1, uniform_reg=20`` (the code's MOO), ``entropy_bonus=20`` (the code's
TA-MOO), ``mask_achieved_gradients=True`` (the code's EoT), ``goal='label'``.

Keys: row r (example, or group for 'uni') starts from fold_in(key, r) (a (rows,) batch of keys is used as is),
as ``pgd``; EoT step t draws from fold_in(fold_in(k_r, EOT_FOLD), t) as ``eot_pgd``; PCGrad's task orders from
fold_in(fold_in(k_r, PCGRAD_FOLD), t). The whole loop is one XLA program; x_adv is the last iterate.
"""

from __future__ import annotations

import functools
import inspect
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust import threat
from jaxrobust.attacks import moo_weights as mw
from jaxrobust.attacks import transforms as tr
from jaxrobust.attacks.eot import eot_task_losses
from jaxrobust.attacks.model_calls import fooled, random_init, resolve_unroll, validate
from jaxrobust.attacks.per_example import as_bcast, example_keys, fold_keys
from jaxrobust.attacks.pgd import EOT_FOLD
from jaxrobust.attacks.registry import AttackInfo, configured
from jaxrobust.attacks.universal import group_losses, make_groups, project_group
from jaxrobust.types import Array

TASKS = ("ens", "uni", "eot")
WEIGHTINGS = ("uniform", "mgda", "tamoo", "minmax", "pcgrad", "cagrad", "hvm")
MOO_INITS = ("uniform", "one_sided", "none")
GOALS = ("clean", "label")
UPDATE_ORDERS = ("thesis", "code")
PCGRAD_FOLD = 0x9C6A  # PCGrad's task orders: fold_in(fold_in(k_r, PCGRAD_FOLD), t)


class TaskSet(NamedTuple):
  """A task set over ``rows`` optimisation variables v (B examples, or G groups for 'uni').

  start(keys, init) -> v_0; values(v, step_keys) -> (f (rows, m) signed objectives, achieved (rows, m) bool);
  project(v) -> v in the eps-ball and box; output(v) -> x_adv (B, ...); ref: (rows, ...) clean points;
  keyed: values reads step keys (EoT).
  """
  start: Callable
  values: Callable
  project: Callable
  output: Callable
  ref: Array
  keyed: bool = False


class MooInfo(NamedTuple):
  """Diagnostics (the thesis's "MOO final w"): weights (rows, m) of the last step, achieved (rows, m) bool
  and signed objectives f (rows, m) (the loss; minus the loss when targeted) at x_adv (rows: examples, or
  groups for 'uni'). EoT reads them under a fresh draw of the transformations."""
  weights: Array
  achieved: Array
  objectives: Array


class SuccessRates(NamedTuple):
  """Bui et al. 2023's metrics, as fractions: per_task (m,) A-i, average A-Avg, all A-All."""
  per_task: Array
  average: Array
  all: Array


def success_rates(achieved: Array) -> SuccessRates:
  """A-i = mean over rows of achieved[:, i]; A-Avg = mean_i A-i; A-All = fraction of rows with every task
  achieved (A-All <= min_i A-i <= A-Avg <= max_i A-i)."""
  a = jnp.asarray(achieved, jnp.float32)
  per_task = jnp.mean(a, axis=0)
  return SuccessRates(per_task, jnp.mean(per_task), jnp.mean(jnp.all(achieved, axis=1).astype(jnp.float32)))


def initial_point(keys, ref: Array, eps, init: str) -> Array:
  """PGD's start U(-eps, eps) ('uniform', thesis) or ref + eps U[0, 1) ('one_sided', the reference's MOO /
  TA-MOO / MinMax), before the box."""
  if init == "one_sided":
    e = as_bcast(eps, ref)
    return ref + e * jax.vmap(lambda k, r: jax.random.uniform(k, r.shape, r.dtype))(keys, ref)
  return random_init(keys, ref, eps, "linf", init)


def ensemble_tasks(member_logits_fn, x: Array, y: Array, *, eps, loss="ce", targeted: bool = False) -> TaskSet:
  """ENS: task i = member i (``member_logits_fn(x) -> (M, B, K)``)."""
  attack_loss = losses_lib.get_attack_loss(loss)
  sign = -1.0 if targeted else 1.0
  clean = jax.eval_shape(member_logits_fn, x)
  if len(clean.shape) != 3 or clean.shape[1] != x.shape[0]:
    raise ValueError(f"tasks='ens' needs member logits of shape (members, batch, classes) = (M, {x.shape[0]}, K) "
                     f"from logits_fn; got {clean.shape} (see AttackInfo.model_output)")
  ref = jax.lax.stop_gradient(member_logits_fn(x)) if attack_loss.needs_reference else None

  def values(v, _):
    z = member_logits_fn(v)
    per = jax.vmap(lambda zi, ri: attack_loss(zi, y, ri), in_axes=(0, 0 if ref is not None else None))(z, ref)
    return sign * per.T, jax.vmap(lambda zi: fooled(zi, y, targeted))(z).T

  return TaskSet(start=lambda keys, init: threat.clip_box(initial_point(keys, x, eps, init)), values=values,
                 project=lambda v: threat.project_ball_and_box(v, x, eps, "linf"), output=lambda v: v, ref=x)


def universal_tasks(logits_fn, x: Array, y: Array, *, eps, group_size: int, loss="ce", targeted: bool = False,
                    goal: str = "clean") -> TaskSet:
  """UNI: groups of ``group_size`` consecutive inputs share one delta (``universal.make_groups``); task k =
  member k of the group."""
  if x.shape[0] % int(group_size):
    raise ValueError(f"tasks='uni' needs a batch that is a multiple of group_size={group_size} (a padded member "
                     f"would be a task with zero gradient); got {x.shape[0]}")
  attack_loss = losses_lib.get_attack_loss(loss)
  sign = -1.0 if targeted else 1.0
  groups = make_groups(x, y, group_size)
  flat_x = groups.x.reshape((-1,) + x.shape[1:])
  clean = jax.lax.stop_gradient(logits_fn(flat_x))
  ref_logits = clean.reshape(groups.y.shape + clean.shape[1:]) if attack_loss.needs_reference else None
  wanted = groups.y.reshape(-1) if (goal == "label" or targeted) else losses_lib.predict(clean)

  def values(z, _):
    per, logits = group_losses(logits_fn, groups, z, attack_loss, ref_logits)
    hit = fooled(logits.reshape((-1,) + logits.shape[2:]), wanted, targeted)
    return sign * per, hit.reshape(groups.y.shape)

  def start(keys, init):
    return jnp.clip(initial_point(keys, groups.ref, eps, init), groups.low, groups.high)

  return TaskSet(start=start, values=values, project=lambda z: project_group(z, groups, eps, "linf"),
                 output=lambda z: threat.clip_box(groups.flatten(groups.members(z))), ref=groups.ref)


def eot_tasks(logits_fn, x: Array, y: Array, *, eps, loss="ce", targeted: bool = False, goal: str = "clean",
              transforms="all", setting: str = "stochastic") -> TaskSet:
  """EoT: task i = transformation t_i (``eot.eot_task_losses``), one factor p per example and step."""
  transforms = tr.canonical_transforms(transforms)
  if setting not in tr.SETTINGS:
    raise ValueError(f"unknown EoT setting {setting!r}; expected one of {tr.SETTINGS}")
  sign = -1.0 if targeted else 1.0
  wanted = y if (goal == "label" or targeted) else losses_lib.predict(jax.lax.stop_gradient(logits_fn(x)))

  def values(v, keys):
    per, z = eot_task_losses(logits_fn, v, x, y, keys, transforms=transforms, setting=setting, loss=loss)
    return sign * per, jax.vmap(lambda zi: fooled(zi, wanted, targeted))(z).T

  return TaskSet(start=lambda keys, init: threat.clip_box(initial_point(keys, x, eps, init)), values=values,
                 project=lambda v: threat.project_ball_and_box(v, x, eps, "linf"), output=lambda v: v, ref=x,
                 keyed=True)


def weight_rule(weighting: str, *, inner_steps: int = 10, inner_lr: float = 0.005, tamoo_lambda: float = 100.0,
                entropy_bonus: float = 0.0, uniform_reg: float = 0.0, mask_achieved_gradients: bool = False,
                minmax_gamma: float = 3.0, cagrad_alpha: float = 0.5, cagrad_rescale: int = 1,
                hvm_nadir_scale: float = 0.5) -> mw.WeightRule:
  """The ``moo_weights.WeightRule`` of a weighting name ('mgda' is 'tamoo' with lambda = 0 and no entropy)."""
  if weighting not in WEIGHTINGS:
    raise ValueError(f"unknown weighting {weighting!r}; expected one of {WEIGHTINGS}")
  if weighting == "uniform":
    return mw.uniform_rule()
  if weighting in ("mgda", "tamoo"):
    tamoo = weighting == "tamoo"
    hp = mw.InnerObjective(tamoo_lambda=tamoo_lambda if tamoo else 0.0, uniform_reg=uniform_reg,
                           entropy_bonus=entropy_bonus if tamoo else 0.0,
                           mask_achieved_gradients=mask_achieved_gradients and tamoo)
    return mw.softmax_gd_rule(hp, inner_steps, inner_lr)
  if weighting == "minmax":
    return mw.minmax_rule(minmax_gamma, inner_lr)
  if weighting == "pcgrad":
    return mw.pcgrad_rule()
  if weighting == "cagrad":
    return mw.cagrad_rule(cagrad_alpha, cagrad_rescale)
  return mw.hvm_rule(hvm_nadir_scale)


def moo_attack_with_info(logits_fn, x: Array, y: Array, key, *, eps, step_size, steps: int, tasks: str = "ens",
                         weighting: str = "tamoo", loss="ce", targeted: bool = False, init: str = "uniform",
                         update_order: str = "thesis", goal: str = "clean", group_size: int = 4,
                         transforms="all", setting: str = "stochastic", inner_steps: int = 10,
                         inner_lr: float = 0.005, tamoo_lambda: float = 100.0, entropy_bonus: float = 0.0,
                         uniform_reg: float = 0.0, mask_achieved_gradients: bool = False, minmax_gamma: float = 3.0,
                         cagrad_alpha: float = 0.5, cagrad_rescale: int = 1, hvm_nadir_scale: float = 0.5,
                         unroll=None) -> tuple[Array, MooInfo]:
  """Multi-objective Linf attack (Bui et al. 2023, Algorithm 1, and its baselines). Returns (x_adv (B, ...),
  ``MooInfo``); ``moo_attack`` returns x_adv only.

  Args:
    logits_fn: 'ens': ``x -> (M, B, K)`` member logits; 'uni' / 'eot': ``x -> (B, K)`` logits.
    x: (B, ...) images in [0, 1]; y: (B,) labels (targets when ``targeted``).
    key: one PRNG key (row r uses fold_in(key, r); rows are groups for 'uni') or a (rows,) batch of keys.
    eps, step_size: Linf budget and step (scalars or (rows,)); thesis 8/255 and 2/255.
    steps: outer iterations L (static; thesis 100).
    tasks: 'ens', 'uni' or 'eot' (module docstring).
    weighting: how the task gradients are combined, one of ``WEIGHTINGS`` ('tamoo', 'mgda', 'minmax',
      'uniform', 'pcgrad', 'cagrad', 'hvm').
    loss: attack loss name ('ce', 'cw' with kappa 50, 'kl') or callable (``losses.get_attack_loss``).
    targeted: minimise the loss towards y; a task is achieved when its prediction equals y.
    init: 'uniform' (U(-eps, eps), thesis), 'one_sided' (eps U[0, 1), code) or 'none'.
    update_order: 'thesis' (weights at delta_t, then the step) or 'code' (the step uses the previous
      weights: the first step is uniform).
    goal: 'uni' / 'eot' untargeted goal, 'clean' (pred != clean prediction, thesis) or 'label' (pred != y, code).
    group_size: 'uni' K (static). transforms, setting: 'eot' (``transforms.py``; 'stochastic' or 'deterministic').
    inner_steps, inner_lr: K and eta_w of the softmax-GD solver (thesis 10 and 0.005; code MOO: 1 step);
      inner_lr is also MinMax's eta_w.
    tamoo_lambda: lambda of TA-MOO's task-oriented regulariser (100).
    entropy_bonus: gamma_H, weight of the entropy bonus on the task weights (code 20; TA-MOO only; 0: thesis).
    uniform_reg: gamma_u, weight of the pull of the weights towards uniform (code MOO 20; 0: thesis).
    mask_achieved_gradients: TA-MOO's quadratic over unachieved tasks only (code EoT).
    minmax_gamma: MinMax's gamma, the softness of its max over tasks (3).
    cagrad_alpha: CAGrad's alpha: the conflict-averse ball around the mean gradient g_0 has radius
      alpha ||g_0|| (0.5).
    cagrad_rescale: CAGrad's rescaling of the combined gradient: 0 none, 1 by 1 / (1 + alpha^2),
      2 by 1 / (1 + alpha).
    hvm_nadir_scale: hypervolume maximisation's nadir point, scale * min_i f_i.
    unroll: ``lax.fori_loop`` unroll factor.
  """
  validate(x, y, eps=None, step_size=None)
  for name, value, allowed in (("tasks", tasks, TASKS), ("init", init, MOO_INITS), ("goal", goal, GOALS),
                               ("update_order", update_order, UPDATE_ORDERS)):
    if value not in allowed:
      raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")
  if int(steps) != steps or steps < 0:
    raise ValueError(f"need steps >= 0; got {steps}")
  if weighting == "hvm" and targeted:
    raise ValueError("weighting='hvm' needs nonnegative objectives (log(f_i - nadir)); a targeted attack's are "
                     "minus the loss")
  rule = weight_rule(weighting, inner_steps=inner_steps, inner_lr=inner_lr, tamoo_lambda=tamoo_lambda,
                     entropy_bonus=entropy_bonus, uniform_reg=uniform_reg,
                     mask_achieved_gradients=mask_achieved_gradients, minmax_gamma=minmax_gamma,
                     cagrad_alpha=cagrad_alpha, cagrad_rescale=cagrad_rescale, hvm_nadir_scale=hvm_nadir_scale)
  if tasks == "ens":
    task_set = ensemble_tasks(logits_fn, x, y, eps=eps, loss=loss, targeted=targeted)
  elif tasks == "uni":
    task_set = universal_tasks(logits_fn, x, y, eps=eps, group_size=group_size, loss=loss, targeted=targeted,
                               goal=goal)
  else:
    task_set = eot_tasks(logits_fn, x, y, eps=eps, loss=loss, targeted=targeted, goal=goal, transforms=transforms,
                         setting=setting)
  ref = task_set.ref
  rows = ref.shape[0]
  with jax.ensure_compile_time_eval():
    for name, v in (("eps", eps), ("step_size", step_size)):
      threat.check_eps(v, rows, name=name)
  needs_keys = init in ("uniform", "one_sided") or task_set.keyed or weighting == "pcgrad"
  keys = example_keys(key, rows) if needs_keys else None
  eot_keys = fold_keys(keys, EOT_FOLD) if task_set.keyed else None
  pcgrad_keys = fold_keys(keys, PCGRAD_FOLD) if weighting == "pcgrad" else None
  alpha = as_bcast(step_size, ref)
  m = jax.eval_shape(lambda v: task_set.values(v, eot_keys)[0], ref).shape[1]

  uniform = jnp.full((rows, m), 1.0 / m, ref.dtype)

  def weights_and_direction(t, v, state):
    step_keys = fold_keys(eot_keys, t) if task_set.keyed else None
    f, vjp, achieved = jax.vjp(lambda u: task_set.values(u, step_keys), v, has_aux=True)
    solver_keys = fold_keys(pcgrad_keys, t) if pcgrad_keys is not None else None
    if rule.uses_gram:
      cotangents = jnp.broadcast_to(jnp.eye(m, dtype=f.dtype)[:, None, :], (m,) + f.shape)
      g = jax.vmap(lambda c: vjp(c)[0])(cotangents)                       # (m, rows, ...) per-task gradients
      flat = g.reshape(m, rows, -1)
      new_w, new_state = rule.update(state, jnp.einsum("ind,jnd->nij", flat, flat), f, achieved, solver_keys)
    else:
      new_w, new_state = rule.update(state, None, f, achieved, solver_keys)
    if update_order == "code":  # the reference steps with the previous weights, so its first step is uniform
      first = t == 0
      new_w = jnp.where(first, uniform, new_w)
      new_state = jax.tree.map(lambda old, new: jnp.where(first, old, new), state, new_state)
    w = jax.lax.stop_gradient(new_w)
    if rule.uses_gram:
      return w, new_state, jnp.einsum("nm,mn...->n...", w, g)
    return w, new_state, vjp(w.astype(f.dtype))[0]  # one vjp with cotangent w is sum_i w_i g_i

  def step(t, carry):
    v, state, _ = carry
    w, state, direction = weights_and_direction(t, v, state)
    return task_set.project(v + alpha * jnp.sign(direction)), state, w

  v0 = ref if init == "none" else task_set.start(keys, init)
  carry = (v0, rule.init(rows, m, ref.dtype), uniform)
  v, _, w = jax.lax.fori_loop(0, steps, step, carry, unroll=resolve_unroll(unroll, steps))
  f, achieved = task_set.values(v, fold_keys(eot_keys, steps) if task_set.keyed else None)
  return task_set.output(v).astype(x.dtype), MooInfo(w, achieved, f)


def moo_attack(logits_fn, x: Array, y: Array, key, **options) -> Array:
  """Multi-objective Linf attack (Bui et al. 2023, Algorithm 1, and its baselines): x_adv (B, ...), the last
  iterate. Options and their defaults: ``moo_attack_with_info`` (which also returns the final weights)."""
  return moo_attack_with_info(logits_fn, x, y, key, **options)[0]


# The options are moo_attack_with_info's (for inspect, ``configured`` and the CLI listing).
moo_attack.__signature__ = inspect.signature(moo_attack_with_info).replace(return_annotation=Array)


def _moo_factory(*, tasks: str, eps, step_size=None, steps: int = 100, **kw):
  if step_size is None:  # the thesis's 2/255 for eps = 8/255
    step_size = eps / 4
  return configured(moo_attack, tasks=tasks)(eps=eps, step_size=step_size, steps=steps, **kw)


_MEMBER_LOGITS_NOTE = "logits_fn returns member logits (M, B, K)"
# Each entry hides (and refuses) the options of the other task sets.
_UNI_ONLY, _EOT_ONLY = ("group_size",), ("transforms", "setting", "mask_achieved_gradients")
REGISTRY = {
    "moo_ens": AttackInfo(functools.partial(_moo_factory, tasks="ens"), forwards_to=(moo_attack_with_info,),
                          fixed=("tasks", "goal") + _UNI_ONLY + _EOT_ONLY, model_output="member_logits",
                          summary="multi-objective attack on every ensemble member (weighting: tamoo, mgda, minmax, "
                                  "uniform, pcgrad, cagrad, hvm; Bui et al. 2023); " + _MEMBER_LOGITS_NOTE),
    "moo_uni": AttackInfo(functools.partial(_moo_factory, tasks="uni"), forwards_to=(moo_attack_with_info,),
                          fixed=("tasks",) + _EOT_ONLY,
                          summary="multi-objective attack with one perturbation per group of group_size inputs "
                                  "(TA-MOO's UNI; weighting as moo_ens)"),
    "moo_eot": AttackInfo(functools.partial(_moo_factory, tasks="eot"), forwards_to=(moo_attack_with_info,),
                          fixed=("tasks",) + _UNI_ONLY,
                          summary="multi-objective attack over the EoT transformations I H V C G B R "
                                  "(TA-MOO's EoT; weighting as moo_ens)"),
}
