"""Brendel & Bethge: the closed-form minimum on a linear 2-class model, outputs in the box and adversarial or x,
never farther than the PGD start, the re-attack of the survivors never increases a distance, bad options
refused by get_attack, registry entry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.attacks.brendel_bethge import bb, bb_search
from jaxrobust.attacks.per_example import example_keys
from jaxrobust.attacks.pgd import pgd
from jaxrobust.attacks.registry import attack_info, get_attack
from tests.attacks import aa_helpers
from tests.attacks.min_norm_helpers import closed_form, linear_two_class, norms_of, points, predict

NORMS = ("linf", "l2")
INIT_EPS = 0.5
KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def linear_runs():
  """Per norm: the B&B result on the linear model (48 points; the PGD start's radius is the median minimum
  distance, so about half of them have no adversarial start) and the PGD start itself (same per-example keys)."""
  f, w, b = linear_two_class(0)
  x, y, s = points(w, b, 48)
  out = {}
  for norm in NORMS:
    eps = float(np.median(closed_form(w, s, norm)))
    res = jax.jit(lambda x, y, k: bb_search(f, x, y, k, norm=norm, steps=30, init_eps=eps))(x, y, KEY)
    start = pgd(f, x, y, example_keys(KEY, len(x)), eps=eps, step_size=eps / 2, steps=20, norm=norm)
    out[norm] = res, start
  return f, w, x, y, s, out


@pytest.mark.parametrize("norm", NORMS)
def test_linear_two_class_closed_form(linear_runs, norm):
  f, w, x, y, s, out = linear_runs
  res, start = out[norm]
  ok = np.asarray(res.success)
  started = predict(f, start) != np.asarray(y)
  np.testing.assert_array_equal(ok, started)  # broken exactly where the PGD start is adversarial
  assert 10 <= ok.sum() <= len(x) - 10
  ratio = np.asarray(res.norm)[ok] / closed_form(w, s, norm)[ok]
  assert ratio.min() > 0.999 and ratio.max() < 1.002, (ratio.min(), ratio.max())


@pytest.mark.parametrize("norm", NORMS)
def test_outputs_in_box_adversarial_or_x_and_below_the_start(linear_runs, norm):
  f, w, x, y, s, out = linear_runs
  res, start = out[norm]
  x_adv, nrm, ok = np.asarray(res.x_adv), np.asarray(res.norm), np.asarray(res.success)
  assert x_adv.min() >= 0 and x_adv.max() <= 1
  fooled = predict(f, res.x_adv) != np.asarray(y)
  same = (x_adv == np.asarray(x)).reshape(len(x), -1).all(1)
  assert (ok == fooled).all() and same[~ok].all() and np.isinf(nrm[~ok]).all()
  np.testing.assert_allclose(nrm[ok], norms_of(res.x_adv, x, norm)[ok], rtol=1e-5)
  start_norm = norms_of(start, x, norm)[ok]
  assert (nrm[ok] <= start_norm * (1 + 1e-6)).all()
  assert np.median(nrm[ok] / start_norm) < 0.9  # it does walk towards x


@pytest.mark.slow
def test_reattack_of_survivors_never_increases_a_distance():
  f = aa_helpers.random_model(3, "mlp")
  x = aa_helpers.random_images(3, 16)
  y = jnp.asarray(predict(f, x))
  run = jax.jit(lambda x, y, k, r: bb_search(f, x, y, k, norm="linf", eps=0.02, init_eps=0.04, steps=10,
                                             repeats=r), static_argnums=3)
  once, thrice = run(x, y, KEY, 1), run(x, y, KEY, 3)
  n1, n3 = np.asarray(once.norm), np.asarray(thrice.norm)
  broken = np.asarray(once.success)  # within eps = 0.02 after the first run: never re-attacked
  assert 0 < broken.sum() < len(x)
  np.testing.assert_array_equal(np.asarray(thrice.x_adv)[broken], np.asarray(once.x_adv)[broken])
  assert (n3 <= n1).all() and np.asarray(thrice.success).sum() >= broken.sum()
  assert (n3[np.asarray(thrice.success)] <= 0.02 * (1 + 1e-6)).all()


def test_registry_entry():
  info = attack_info("bb")
  assert info.min_norm and info.norms == NORMS and info.box == "white" and info.jittable


@pytest.mark.slow
def test_eps_returns_x_beyond_eps():
  f, w, b = linear_two_class(0)
  x, y, s = points(w, b, 8)
  attack = get_attack("bb", norm="l2", steps=5, init_eps=INIT_EPS, eps=0.05)
  out = np.asarray(attack(f, x, y, KEY))
  d = norms_of(out, x, "l2")
  assert (d <= 0.05 * (1 + 1e-6)).all() and (d > 0).any()


@pytest.mark.parametrize("bad, what", [
    (dict(norm="l1"), "norm"), (dict(momentum=1.0), "momentum"), (dict(lr_num_decay=0), "lr_num_decay"),
    (dict(overshoot=0.9), "overshoot"), (dict(init="fmn"), "init"), (dict(repeats=0), "repeats"),
    (dict(lr=0.0), "lr"), (dict(stepz=3), "stepz")])
def test_bad_options_refused_by_get_attack(bad, what):
  with pytest.raises(ValueError, match=what):
    get_attack("bb", eps=0.1, **bad)


def test_pgd_start_needs_a_radius():
  with pytest.raises(ValueError, match="init_eps"):
    get_attack("bb")
  with pytest.raises(ValueError, match="init_eps"):
    bb(lambda x: x.reshape(len(x), -1)[:, :2], jnp.zeros((2, 2, 1, 1)), jnp.zeros((2,), jnp.int32), KEY)


def test_protocols_run_bb_as_the_papers():
  """UDR / ASCL: PGD-20 start (step eps / 2), 200 steps, 1000 points; CCE: 100 steps from PGD-20 of radius
  eps or 2 eps, step eta, 3 runs on the survivors."""
  from jaxrobust.configs.protocols import get_protocol
  for name in ("udr_cifar10", "udr_mnist", "ascl_cifar10", "ascl_cifar100"):
    p = get_protocol(name)
    spec = next(a for a in p.attacks if a["label"] == "B&B")
    assert (spec["name"], spec["steps"], spec["init_steps"], spec["max_examples"]) == ("bb", 200, 20, 1000)
    assert spec["eps"] == p.attacks[0]["eps"] and "init_eps" not in spec and "B&B" in p.columns
    assert "B&B" not in p.missing
  cce = get_protocol("cce_cifar10")
  one, two = (next(a for a in cce.attacks if a["label"] == f"B&B(wPGD{k})") for k in (1, 2))
  assert (one["steps"], one["repeats"], one["init_step_size"]) == (100, 3, 2 / 255)
  assert one["init_eps"] == one["eps"] == 8 / 255 and two["init_eps"] == 16 / 255
  assert not {"B&B(wPGD1)", "B&B(wPGD2)"} & set(cce.missing)


@pytest.mark.slow
def test_eps_curve_from_the_evaluator_agrees_with_an_eps_run():
  """One unconstrained B&B run feeds ``eps_curve``; its robust accuracy at eps equals that of B&B run with eps
  (same keys, same PGD starts), up to a point whose norm rounds to either side of eps."""
  from jaxrobust.data import ArrayDataset
  from jaxrobust.evaluate.robust import RobustEvaluator
  params, _ = aa_helpers.train_digits("linear")
  xs, ys = aa_helpers.digits()
  test = ArrayDataset(xs[1200:1296], ys[1200:1296], 10, "digits")
  ev = RobustEvaluator(lambda v, xb: aa_helpers.linear_apply(v, xb))
  base = {"name": "bb", "norm": "linf", "steps": 20, "init_eps": 0.3}
  r = ev.evaluate(params, test, [dict(base, label="c", eps_curve=[0.05, 0.1])], batch_size=96, progress=False)
  curve = r["eps_curve"]["c"]
  assert curve["broken"] > 0.5 and (np.diff(curve["robust_acc"]) <= 0).all()
  e = ev.evaluate(params, test, [dict(base, label="e", eps=0.1)], batch_size=96, progress=False)
  assert abs(e["robust_acc"]["e"] - curve["robust_acc"][1]) <= 1 / 96
