"""Multi-objective attacks (TA-MOO, Bui et al. 2023): the weight solvers' properties of spec cce_tamoo.md B12 and
the attack's projections, reductions to PGD, per-sample independence and compile-once behaviour."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attack_testkit import images, labels, mlp_apply, mlp_params
from jaxrobust.attacks import moo_weights as mw
from jaxrobust.attacks import registry
from jaxrobust.attacks.moo import (ensemble_tasks, eot_tasks, initial_point, moo_attack, moo_attack_with_info,
                                   success_rates, universal_tasks, weight_rule)
from jaxrobust.attacks.per_example import example_keys
from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.universal import universal_pgd

SHAPE = (4, 4, 2)
D = int(np.prod(SHAPE))
K = 5
B = 8
EPS, STEP = 0.1, 0.025
X = images(0, B, SHAPE)
Y = labels(0, B, K)
KEY = jax.random.key(7)
PARAMS = [mlp_params(s, d=D, k=K) for s in range(4)]
STACKED = jax.tree.map(lambda *a: jnp.stack(a), *PARAMS)


# Compiled once per (model, options, shapes), so the tests that repeat a configuration reuse the program.
STATIC = ("eps", "step_size", "steps", "tasks", "weighting", "group_size", "transforms", "init", "update_order")
run_attack = jax.jit(moo_attack, static_argnums=0, static_argnames=STATIC)
run_with_info = jax.jit(moo_attack_with_info, static_argnums=0, static_argnames=STATIC)


def members(x, stacked=STACKED):
  """(M, B, K) member logits of the stacked MLP ensemble."""
  return jax.vmap(lambda p: mlp_apply(p, x))(stacked)


def single(x):
  return mlp_apply(PARAMS[0], x)


def gram(g):
  g = jnp.asarray(g, jnp.float32)
  return g @ g.T


def rng(seed):
  return np.random.RandomState(seed)


@functools.partial(jax.jit, static_argnames=("iters",))
def exact_weights(q, achieved, lam, iters=4000):
  """Reference QP solver: projected gradient on argmin_{w in simplex} w^T Q w + lam Omega(w), step 1/L."""
  lipschitz = 2.0 * (jnp.linalg.eigvalsh(q)[..., -1] + lam) + 1e-6

  def objective(w):
    return jnp.sum(jnp.einsum("...i,...ij,...j->...", w, q, w) + lam * mw.task_oriented_regulariser(w, achieved))

  step = lambda _, w: mw.simplex_projection(w - jax.grad(objective)(w) / lipschitz[..., None])
  return jax.lax.fori_loop(0, iters, step, jnp.full(q.shape[:-1], 1.0 / q.shape[-1], q.dtype))


# ---------------------------------------------------------------------------- simplex

def test_softmax_and_projections_land_on_the_simplex():
  v = jnp.asarray(rng(0).randn(64, 6) * 3, jnp.float32)
  w = jax.nn.softmax(v, axis=-1)
  assert float(w.min()) >= 0 and np.allclose(w.sum(-1), 1, atol=1e-6)
  exact = jax.jit(mw.simplex_projection)(v)
  np.testing.assert_allclose(exact, jax.jit(jax.vmap(optax.projections.projection_simplex))(v), atol=1e-6)
  bis = jax.jit(mw.bisection_simplex_projection)(v)
  assert float(bis.min()) >= 0 and np.allclose(bis.sum(-1), 1, atol=1e-4)
  np.testing.assert_allclose(bis, exact, atol=1e-4)
  point = jnp.asarray(rng(1).dirichlet(np.ones(6), 16), jnp.float32)   # a simplex point is a fixed point
  np.testing.assert_allclose(jax.jit(mw.bisection_simplex_projection)(point), point, atol=1e-5)
  np.testing.assert_allclose(jax.jit(mw.simplex_projection)(point), point, atol=1e-6)


# ---------------------------------------------------------------------------- MGDA

@pytest.mark.parametrize("a", [1.0, 2.5])
def test_mgda_anti_parallel(a):
  g1 = np.array([1.0, -2.0, 0.5], np.float32)
  g = np.stack([g1, -a * g1])
  w = mw.mgda_two_task_closed_form(gram(g))
  np.testing.assert_allclose(w, [a / (1 + a), 1 / (1 + a)], atol=1e-6)
  np.testing.assert_allclose(np.asarray(w) @ g, 0, atol=1e-5)


def test_mgda_orthogonal_dominated_identical_and_grid():
  g = np.array([[2.0, 0, 0], [0, 1.0, 0]], np.float32)
  w = np.asarray(mw.mgda_two_task_closed_form(gram(g)))
  n1, n2 = 4.0, 1.0
  np.testing.assert_allclose(w, np.array([1 / n1, 1 / n2]) / (1 / n1 + 1 / n2), atol=1e-6)
  np.testing.assert_allclose(np.sum((w @ g) ** 2), n1 * n2 / (n1 + n2), rtol=1e-6)
  dominated = gram([[1.0, 0.0], [2.0, 0.5]])                        # g1 . g2 = 2 >= ||g1||^2 = 1
  np.testing.assert_allclose(mw.mgda_two_task_closed_form(dominated), [1, 0])
  np.testing.assert_allclose(mw.mgda_two_task_closed_form(dominated, code_clip=True), [0.999, 0.001], atol=1e-7)
  same = gram([[1.0, 2.0], [1.0, 2.0]])
  w = np.asarray(mw.mgda_two_task_closed_form(same))
  np.testing.assert_allclose(w.sum(), 1) and np.testing.assert_allclose(w @ np.asarray(same) @ w, 5.0, rtol=1e-6)
  grid = np.linspace(0, 1, 2001)
  for seed in range(20):  # against a grid search of ||w g_1 + (1 - w) g_2||^2
    q = np.asarray(gram(rng(seed).randn(2, 4)), np.float64)
    costs = grid ** 2 * q[0, 0] + 2 * grid * (1 - grid) * q[0, 1] + (1 - grid) ** 2 * q[1, 1]
    w = np.asarray(mw.mgda_two_task_closed_form(jnp.asarray(q, jnp.float32)), np.float64)
    assert w @ q @ w <= costs.min() + 1e-5 * (1 + costs.min())


def test_mgda_direction_decreases_no_task():
  """g = sum w*_i g_i satisfies g . g_i >= ||g||^2 for all i (m = 2 closed form, m = 4 exact QP)."""
  for seed in range(10):
    g = rng(seed).randn(2, 6).astype(np.float32)
    d = np.asarray(mw.mgda_two_task_closed_form(gram(g))) @ g
    assert np.all(g @ d >= d @ d - 1e-5)
    g = rng(100 + seed).randn(4, 6).astype(np.float32)
    w = np.asarray(exact_weights(gram(g), jnp.zeros(4, bool), 0.0))
    d = w @ g
    assert np.all(g @ d >= d @ d - 1e-4)


def test_softmax_gd_approaches_the_closed_form_but_not_on_the_dominated_listing_1_input():
  q = gram([[1.0, 0.2, 0.0], [-0.3, 1.0, 0.5]])[None]
  closed = mw.mgda_two_task_closed_form(q)
  alpha = mw.softmax_gd(jnp.full((1, 2), 0.5), q, jnp.zeros((1, 2), bool), mw.InnerObjective(), 300, 0.5)
  np.testing.assert_allclose(jax.nn.softmax(alpha), closed, atol=1e-4)
  # Thesis Listing 1: scalar gradients [0.001, 0.002, 0.002, 0.002, 2e3]; the min-norm point is (1, 0, 0, 0, 0)
  # but softmax GD only kills the huge task (its alpha-gradients for the small ones are ~1e-6): it stops near
  # uniform over the first four (the thesis reports [0.28, 0.24, 0.24, 0.24, 0]; we get [0.25, ..., 0]).
  g = jnp.asarray([0.001, 0.002, 0.002, 0.002, 2e3])
  q = (g[:, None] * g[None, :])[None]
  for steps, lr in ((10, 0.005), (1000, 0.005)):
    w = np.asarray(jax.nn.softmax(mw.softmax_gd(jnp.full((1, 5), 0.2), q, jnp.zeros((1, 5), bool),
                                                 mw.InnerObjective(), steps, lr)))[0]
    assert w[4] < 1e-3 and w[0] < 0.5  # far from the optimum w_0 = 1
    assert float(w @ q[0] @ w) > 2.0 * float(q[0, 0, 0])


# ---------------------------------------------------------------------------- TA-MOO's Omega

@jax.jit
def _omega_cases(w, achieved):
  """Omega and the quantities it is checked against, for (n, m) weights and masks."""
  proj = mw.extended_simplex_projection(w, achieved)
  w0 = mw.simplex_projection(w, ~achieved)
  none, every = jnp.zeros_like(achieved), jnp.ones_like(achieved)
  return dict(proj=proj, omega=mw.task_oriented_regulariser(w, achieved), distance=jnp.sum((w - proj) ** 2, -1),
              omega_w0=mw.task_oriented_regulariser(w0, achieved), omega_s0=mw.task_oriented_regulariser(w, none),
              omega_sm=mw.task_oriented_regulariser(w, every), sum_sq=jnp.sum(w * w, -1))


def test_omega_closed_form_is_the_squared_distance_to_the_extended_simplex():
  r = rng(0)
  for m in range(2, 9):
    n = 16
    w = jnp.asarray(r.dirichlet(np.ones(m), n), jnp.float32)
    s = r.randint(1, m, n)                                            # 0 < s < m achieved tasks per draw
    achieved = np.stack([r.permutation(np.arange(m) < si) for si in s])
    c = jax.tree.map(np.asarray, _omega_cases(w, jnp.asarray(achieved)))
    assert np.abs(np.where(achieved, c["proj"], 0)).max() == 0
    np.testing.assert_allclose(c["proj"].sum(-1), 1, atol=1e-6)
    np.testing.assert_allclose(c["omega"], c["distance"], rtol=1e-5, atol=1e-7)
    assert c["omega"].min() > 0                  # the Dirichlet draws put weight on the achieved tasks
    assert np.abs(c["omega_w0"]).max() < 1e-6    # no weight on the achieved tasks: Omega = 0
    assert c["omega_s0"].max() < 1e-12                                                    # s = 0
    np.testing.assert_allclose(c["omega_sm"], c["sum_sq"], rtol=1e-6)                     # s = m


omega_grad = jax.jit(jax.grad(mw.task_oriented_regulariser))


def test_omega_gradient_formula_matches_autograd():
  r = rng(1)
  for m in (2, 5, 8):
    w = jnp.asarray(r.dirichlet(np.ones(m)), jnp.float32)
    for achieved in (r.permutation(np.arange(m) < r.randint(1, m)), np.zeros(m, bool), np.ones(m, bool)):
      achieved = jnp.asarray(achieved)
      s = int(achieved.sum())
      missing = 1 - float(jnp.sum(jnp.where(achieved, 0, w)))
      formula = np.where(achieved, 2 * w, -(2 / max(m - s, 1)) * missing if s < m else 0.0)
      np.testing.assert_allclose(omega_grad(w, achieved), formula, atol=1e-6)


def test_tamoo_reductions_and_the_penalty_path():
  r = rng(2)
  g = r.randn(4, 6).astype(np.float32)
  q = gram(g)[None]
  none = jnp.zeros((1, 4), bool)
  alpha0 = jnp.full((1, 4), 0.25)
  moo = mw.softmax_gd(alpha0, q, none, mw.InnerObjective(), 10, 0.005)
  tamoo = mw.softmax_gd(alpha0, q, none, mw.InnerObjective(tamoo_lambda=100.0), 10, 0.005)
  np.testing.assert_allclose(tamoo, moo, atol=1e-6)                                      # s = 0: TA-MOO = MOO
  everything = jnp.ones((1, 4), bool)                                # s = m, identical tasks: uniform is optimal
  same = mw.softmax_gd(alpha0, jnp.ones((1, 4, 4)), everything, mw.InnerObjective(tamoo_lambda=100.0), 10, 0.005)
  np.testing.assert_allclose(jax.nn.softmax(same), 0.25, atol=1e-6)
  # exact QP: Omega(w*(lam)) is non-increasing; lam -> inf gives MGDA on the unachieved tasks
  achieved = jnp.asarray([True, False, True, False])
  qs = gram(np.stack([g[0], g[1], 0.1 * g[0] + 0.05 * g[1], g[3]]))  # achieved tasks with small gradients
  omegas = []
  for lam in (0.0, 1.0, 10.0, 100.0, 1e4):
    w = exact_weights(qs, achieved, lam)
    omegas.append(float(mw.task_oriented_regulariser(w, achieved)))
  assert omegas[0] > 1e-2 and all(b <= a + 1e-6 for a, b in zip(omegas, omegas[1:]))
  w = np.asarray(exact_weights(qs, achieved, 1e4, iters=20000))
  assert w[0] + w[2] < 1e-3
  sub = mw.mgda_two_task_closed_form(qs[np.ix_([1, 3], [1, 3])])
  np.testing.assert_allclose(w[[1, 3]], sub, atol=2e-3)


def test_entropy_bonus_and_masked_quadratic_flags():
  q = gram(rng(3).randn(3, 5))
  w = jnp.asarray([0.2, 0.3, 0.5])
  achieved = jnp.asarray([True, False, False])
  base = mw.inner_objective(w, q, achieved, mw.InnerObjective())
  h = -(0.3 * np.log(0.3) + 0.5 * np.log(0.5))  # entropy of the unachieved weights, maximised by the bonus
  np.testing.assert_allclose(mw.inner_objective(w, q, achieved, mw.InnerObjective(entropy_bonus=20.0)),
                             base - 20 * h, rtol=1e-5)
  wu = jnp.asarray([0.0, 0.3, 0.5])
  masked = mw.inner_objective(w, q, achieved, mw.InnerObjective(mask_achieved_gradients=True))
  np.testing.assert_allclose(masked, wu @ q @ wu, rtol=1e-5)


# ---------------------------------------------------------------------------- MinMax, PCGrad, CAGrad, HVM

def test_minmax_fixed_point_tends_to_uniform_as_gamma_grows():
  f = jnp.asarray([[0.3, 1.2, 2.0, 0.1]])
  gaps = []
  for gamma in (3.0, 30.0, 300.0):
    lr = 0.5 / gamma
    w = jax.lax.fori_loop(0, 400, lambda _, w: mw.minmax_update(w, f, gamma, lr), jnp.full((1, 4), 0.25))
    assert float(w.min()) >= 0 and abs(float(w.sum()) - 1) < 1e-4
    np.testing.assert_allclose(w, mw.simplex_projection(0.25 - f / gamma), atol=1e-4)
    gaps.append(float(jnp.abs(w - 0.25).max()))
  assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 5e-3


def _pcgrad_reference(g):
  """PCGrad on explicit vectors, tasks in the order 1..m, mean reduction."""
  out = []
  for i in range(len(g)):
    gi = g[i].copy()
    for j in range(len(g)):
      dot = gi @ g[j]
      if dot < 0:
        gi = gi - dot / (g[j] @ g[j]) * g[j]
    out.append(gi)
  return np.mean(out, axis=0)


def test_pcgrad_matches_the_vector_algorithm():
  g = rng(0).randn(8, 3, 6)
  w = np.asarray(mw.pcgrad_weights(jax.vmap(gram)(g)))
  for wi, gi in zip(w, g):
    np.testing.assert_allclose(wi @ gi, _pcgrad_reference(gi), atol=1e-4)
  g = np.abs(rng(9).randn(3, 6))  # no conflicts: the mean gradient
  np.testing.assert_allclose(mw.pcgrad_weights(gram(g)[None]), 1 / 3, atol=1e-6)
  keyed = mw.pcgrad_weights(gram(rng(0).randn(2, 6))[None], example_keys(KEY, 1))  # m = 2: order is irrelevant
  np.testing.assert_allclose(keyed, mw.pcgrad_weights(gram(rng(0).randn(2, 6))[None]), atol=1e-6)


def test_cagrad_special_cases_and_inner_problem():
  q = gram(rng(4).randn(3, 6))
  np.testing.assert_allclose(mw.cagrad_weights(q, alpha=0.0, rescale=0), 1 / 3, atol=1e-6)  # alpha 0: mean
  same = gram(np.tile(rng(5).randn(1, 6), (3, 1)))
  for alpha in (0.5, 1.0):  # identical gradients: g (1 + alpha) / (1 + alpha^2)
    w = mw.cagrad_weights(same, alpha=alpha, rescale=1)
    np.testing.assert_allclose(float(w.sum()), (1 + alpha) / (1 + alpha ** 2), rtol=1e-4)
  # two tasks: the inner x against a grid search of x^T Q b + c sqrt(x^T Q x)
  qs = np.asarray(jax.vmap(gram)(rng(10).randn(5, 2, 5)), np.float64)
  ws = np.asarray(mw.cagrad_weights(jnp.asarray(qs, jnp.float32), 0.5, rescale=0), np.float64)
  grid = np.linspace(0, 1, 4001)
  xs = np.stack([grid, 1 - grid], 1)
  for q, w in zip(qs, ws):
    c = 0.5 * np.sqrt(q.mean() + 1e-8)
    cost = xs @ q @ np.full(2, 0.5) + c * np.sqrt(np.einsum("ni,ij,nj->n", xs, q, xs) + 1e-8)
    x = (w - 0.5) / (w - 0.5).sum()  # w = b + lambda x with x on the simplex
    mine = x @ q @ np.full(2, 0.5) + c * np.sqrt(x @ q @ x + 1e-8)
    assert mine <= cost.min() + 1e-3 * (1 + abs(cost.min()))


def test_hvm_direction_is_the_gradient_of_the_log_hypervolume():
  a = jnp.asarray(rng(6).rand(3, 4) + 0.5, jnp.float32)
  fvec = lambda d: jnp.sum(a * (d + 1.0) ** 2, axis=1)      # three positive objectives of one delta
  d = jnp.asarray(rng(7).randn(4) * 0.3, jnp.float32)
  f = fvec(d)
  nadir = 0.5 * jnp.min(f)
  w = mw.hvm_weights(f, 0.5)
  np.testing.assert_allclose(w @ jax.jacobian(fvec)(d),
                             jax.grad(lambda u: jnp.sum(jnp.log(fvec(u) - nadir)))(d), rtol=1e-5)


# ---------------------------------------------------------------------------- the attack

def assert_in_ball_and_box(a, x, eps):
  a, x = np.asarray(a), np.asarray(x)
  assert a.shape == x.shape and a.min() >= 0.0 and a.max() <= 1.0
  assert np.abs(a - x).max() <= eps + 1e-6


def test_every_iterate_stays_in_the_ball_and_box_for_every_group_member():
  """The model sees every UNI iterate, member by member (each step's forward pass and the final one): all lie in
  the eps-ball and box, and each group shares one delta (the ENS / EoT outputs are checked with the per-row
  tests below)."""
  seen = []

  def logits_fn(x):
    jax.debug.callback(lambda v: seen.append(np.asarray(v)), x)
    return single(x)

  out = moo_attack(logits_fn, X, Y, KEY, eps=EPS, step_size=0.07, steps=3, tasks="uni", weighting="tamoo",
                   group_size=4)
  iterates = seen[-4:]  # uni also evaluates the clean points once, before the loop
  for v in iterates:
    assert_in_ball_and_box(v, X, EPS)
  assert not np.allclose(iterates[0], iterates[-1])
  assert_in_ball_and_box(out, X, EPS)
  d = np.asarray(out - X).reshape(2, 4, -1)
  np.testing.assert_allclose(d, np.broadcast_to(d[:, :1], d.shape), atol=1e-6)  # one delta per group


def test_one_task_is_pgd():
  """m = 1: Uniform = MOO = TA-MOO = PGD from the same start (PGD's random start from the same key, or none)."""
  one = lambda x: single(x)[None]
  for init, weightings in (("uniform", ("tamoo",)), ("none", ("uniform", "mgda"))):
    reference = pgd(single, X, Y, KEY, eps=EPS, step_size=STEP, steps=4, init=init)
    for weighting in weightings:
      out = run_attack(one, X, Y, KEY, eps=EPS, step_size=STEP, steps=4, tasks="ens", weighting=weighting, init=init)
      np.testing.assert_allclose(out, reference, atol=1e-6)


def test_uniform_uni_is_universal_pgd():
  out = moo_attack(single, X, Y, KEY, eps=EPS, step_size=STEP, steps=4, tasks="uni", weighting="uniform",
                   group_size=4)
  np.testing.assert_allclose(out, universal_pgd(single, X, Y, KEY, eps=EPS, step_size=STEP, steps=4, group_size=4),
                             atol=1e-6)


def test_identical_objectives_give_uniform_weights():
  """m copies of one task (Q = ||g||^2 11^T, equal f, equal goals): MOO, TA-MOO and MinMax keep w = 1/m."""
  q = jnp.full((2, 3, 3), 2.5)
  f = jnp.full((2, 3), 0.7)
  for weighting in ("mgda", "tamoo", "minmax"):
    for achieved in (jnp.zeros((2, 3), bool), jnp.ones((2, 3), bool)):
      rule = weight_rule(weighting)
      w, _ = rule.update(rule.init(2, 3, jnp.float32), q, f, achieved, None)
      np.testing.assert_allclose(w, 1 / 3, atol=1e-6)


@pytest.mark.parametrize("tasks,weighting", [("ens", "tamoo"), ("uni", "mgda"), ("eot", "pcgrad")])
def test_rows_do_not_read_the_other_rows(tasks, weighting):
  """Per-sample independence: replacing the second half of the batch (same keys) leaves the first half's
  adversarials unchanged (one compiled program for both calls); with the row's key, an example (a group for
  'uni') gets the same output in any batch."""
  fn = members if tasks == "ens" else single
  kw = dict(eps=EPS, step_size=STEP, steps=3, tasks=tasks, weighting=weighting, group_size=2,
            transforms=("identity", "brightness"))
  keys = example_keys(KEY, B // 2 if tasks == "uni" else B)
  full = run_attack(fn, X, Y, keys, **kw)
  assert_in_ball_and_box(full, X, EPS)
  other_x, other_y = images(5, B, SHAPE), labels(5, B, K)
  half = B // 2
  mixed = run_attack(fn, jnp.concatenate([X[:half], other_x[half:]]), jnp.concatenate([Y[:half], other_y[half:]]),
                     keys, **kw)
  np.testing.assert_allclose(mixed[:half], full[:half], atol=1e-6)
  assert not np.allclose(mixed[half:], full[half:])


def test_code_flags_one_sided_start_and_code_order():
  start = initial_point(example_keys(KEY, B), X, EPS, "one_sided")
  d = np.asarray(start - X)
  assert d.min() >= 0 and d.max() <= EPS + 1e-6 and d.max() > 0.5 * EPS
  # the reference's order steps with the previous weights, so its first step is the uniform one
  coded = run_attack(members, X, Y, None, eps=EPS, step_size=STEP, steps=1, weighting="tamoo", update_order="code",
                     init="none")
  uniform = run_attack(members, X, Y, None, eps=EPS, step_size=STEP, steps=1, weighting="uniform", init="none")
  np.testing.assert_allclose(coded, uniform, atol=1e-6)


def test_task_sets_objectives_and_goals():
  """ENS: task i = member i, achieved = argmax z_i != y (targeted: == y); UNI / EoT: goal 'clean' compares with the
  clean prediction, 'label' with y."""
  z = np.asarray(members(X))
  task_set = ensemble_tasks(members, X, Y, eps=EPS)
  f, achieved = task_set.values(X, None)
  ce = -jax.nn.log_softmax(z, -1)[:, np.arange(B), np.asarray(Y)]
  np.testing.assert_allclose(f, ce.T, rtol=1e-5)
  np.testing.assert_array_equal(achieved, (z.argmax(-1) != np.asarray(Y)).T)
  f, achieved = ensemble_tasks(members, X, Y, eps=EPS, targeted=True).values(X, None)
  np.testing.assert_allclose(f, -ce.T, rtol=1e-5)
  np.testing.assert_array_equal(achieved, (z.argmax(-1) == np.asarray(Y)).T)
  for tasks in (ensemble_tasks(members, X, Y, eps=EPS, loss="kl"),   # KL reads each task's own clean logits
                universal_tasks(single, X, Y, eps=EPS, group_size=4, loss="kl")):
    f, _ = tasks.values(tasks.ref, None)
    np.testing.assert_allclose(f, 0, atol=1e-6)
  clean = np.asarray(single(X)).argmax(-1)
  _, at_clean = universal_tasks(single, X, Y, eps=EPS, group_size=4).values(jnp.asarray(X[::4]), None)
  assert not np.asarray(at_clean).any()  # the clean point (delta = 0) never differs from its clean prediction
  _, by_label = universal_tasks(single, X, Y, eps=EPS, group_size=4, goal="label").values(jnp.asarray(X[::4]), None)
  np.testing.assert_array_equal(np.asarray(by_label).reshape(-1), clean != np.asarray(Y))
  eot = eot_tasks(single, X, Y, eps=EPS, transforms=("identity", "hflip"), setting="deterministic")
  f, achieved = eot.values(X, None)
  assert f.shape == (B, 2) and not np.asarray(achieved[:, 0]).any()
  with pytest.raises(ValueError, match="multiple of group_size"):
    universal_tasks(single, X[:6], Y[:6], eps=EPS, group_size=4)


def test_success_rates():
  achieved = jnp.asarray([[True, True, False], [True, False, False], [True, True, True], [False, False, True]])
  r = success_rates(achieved)
  np.testing.assert_allclose(r.per_task, [0.75, 0.5, 0.5])
  np.testing.assert_allclose([r.average, r.all], [7 / 12, 0.25])
  one = achieved[:, :1]  # one task: A-All = A-Avg
  assert float(success_rates(one).all) == float(success_rates(one).average)


def test_tamoo_vs_moo_on_a_toy_ensemble_reports_the_success_rates():
  """Measured, not asserted as an ordering (4 random MLPs, 16 points, 8 steps from x, eps 0.1). The metric identities
  A-All <= min A-i <= A-Avg <= max A-i must hold."""
  x, y = images(1, 16, SHAPE), labels(1, 16, K)
  rates = {}
  for weighting in ("mgda", "tamoo"):
    _, info = run_with_info(members, x, y, None, eps=EPS, step_size=STEP, steps=8, weighting=weighting, init="none")
    r = jax.tree.map(np.asarray, success_rates(info.achieved))
    assert r.all <= r.per_task.min() + 1e-7 <= r.average + 2e-7 <= r.per_task.max() + 3e-7
    rates[weighting] = (round(100 * float(r.all), 1), round(100 * float(r.average), 1))
  print("A-All / A-Avg (%):", rates)


def test_registry_entries_and_member_logits():
  assert {"moo_ens", "moo_uni", "moo_eot"} <= set(registry.attack_names())
  assert registry.attack_info("moo_ens").model_output == "member_logits"
  assert registry.attack_info("moo_uni").model_output == registry.attack_info("moo_eot").model_output == "logits"
  assert "group_size" not in registry.attack_parameters("moo_ens")
  with pytest.raises(ValueError, match="no parameter 'group_size'"):
    registry.get_attack("moo_ens", eps=0.1, group_size=2)
  with pytest.raises(ValueError, match="member logits"):
    registry.get_attack("moo_ens", eps=0.1, steps=1)(single, X, Y, KEY)
  # the evaluator of a single model refuses it, naming the fix (an ensemble evaluator has a member apply)
  from jaxrobust.evaluate.robust import RobustEvaluator
  from jaxrobust.data import load_dataset
  with pytest.raises(ValueError, match="member apply"):
    RobustEvaluator(lambda v, x: single(x)).evaluate(None, load_dataset("digits", "test").take(4),
                                                     [dict(name="moo_ens", eps=0.1)], progress=False)
  targeted = registry.get_attack("moo_ens", eps=0.1, steps=2, target="least_likely")
  out, t = targeted.run(members, X, Y, KEY)
  assert_in_ball_and_box(out, X, 0.1)
  clean = jax.nn.logsumexp(jax.nn.log_softmax(members(X), -1), 0)
  np.testing.assert_array_equal(t, jnp.argmin(clean, -1))


def test_moo_ens_compiles_once_across_data():
  traces = []

  def member_logits(x):
    traces.append(x.shape)
    return members(x)

  attack = registry.get_attack("moo_ens", eps=0.1, steps=2, weighting="tamoo")
  run = jax.jit(lambda x, y, key: attack(member_logits, x, y, key))
  for seed in range(3):
    out = run(images(seed, B, SHAPE), labels(seed, B, K), jax.random.key(seed))
    if seed == 0:
      n_traces = len(traces)
  jax.block_until_ready(out)
  assert run._cache_size() == 1 and len(traces) == n_traces
