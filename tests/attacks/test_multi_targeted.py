"""Multi-targeted PGD: validity, equal to separate targeted PGD runs combined, batch independence, layouts,
strength against PGD on a trained model, the evaluator, the registry and the CLI listing."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from aa_helpers import digits_test, train_digits  # noqa: E402
from attack_testkit import assert_valid, images, labels, mlp_apply, mlp_params  # noqa: E402

from jaxrobust.attacks import registry  # noqa: E402
from jaxrobust.attacks.multi_targeted import LAYOUTS, multi_targeted_pgd  # noqa: E402
from jaxrobust.attacks.per_example import example_keys, fold_keys  # noqa: E402
from jaxrobust.attacks.pgd import pgd  # noqa: E402

B, K = 8, 5
X = images(0, B)
Y = labels(0, B, K)
MLP = mlp_params(1, 12, 16, K)
KEY = jax.random.key(0)


def _model(params=MLP):
  return jax.tree_util.Partial(mlp_apply, params)


def _mpgd(**static):
  """jit of multi_targeted_pgd on the tiny MLP with eps / step_size traced."""
  @jax.jit
  def run(x, y, key, eps, step_size):
    return multi_targeted_pgd(_model(), x, y, key, eps=eps, step_size=step_size, **static)
  return run


def _reference(x, y, key, *, eps, step_size, steps, norm="linf", loss="ce", include_true_class=True, restarts=1):
  """Separate targeted PGD runs (pgd.pgd), each with its documented key, combined by the documented rule."""
  model = _model()
  y_np = np.asarray(y)

  def margin_loss(logits, t, ref=None):  # z_y - z_t, minimised
    return (jnp.take_along_axis(logits, y[:, None], 1) - jnp.take_along_axis(logits, t[:, None], 1))[:, 0]

  one_run = jax.jit(lambda t, ks: pgd(model, x, t, ks, eps=eps, step_size=step_size, steps=steps, norm=norm,
                                      loss=margin_loss if loss == "margin" else "ce", targeted=True))
  keys = example_keys(key, x.shape[0])
  candidates, margins, fooled = [], [], []
  for t in range(K):
    for r in range(restarts):
      ks = fold_keys(keys, t) if restarts == 1 else fold_keys(fold_keys(keys, t), r)
      xa = np.asarray(one_run(jnp.full_like(y, t), ks))
      z = np.asarray(model(jnp.asarray(xa)))
      other = np.where(np.eye(K, dtype=bool)[y_np], -np.inf, z).max(1)
      valid = (y_np != t) | include_true_class  # without include_true_class the true class is no target
      candidates.append(xa)
      margins.append(np.where(valid, z[np.arange(len(y_np)), y_np] - other, np.inf))
      fooled.append(valid & (z.argmax(1) != y_np))
  margins, fooled = np.stack(margins), np.stack(fooled)
  out = np.empty_like(np.asarray(x))
  for i in range(x.shape[0]):
    pool = np.nonzero(fooled[:, i])[0] if fooled[:, i].any() else np.arange(len(margins))
    out[i] = candidates[pool[np.argmin(margins[pool, i])]][i]  # np.argmin: the first of equal margins
  return out


# ---------------------------------------------------------------- validity

@pytest.mark.parametrize("norm,eps_list", [("linf", [0.0, 0.05, 0.3]), ("l2", [0.0, 0.5])])
def test_in_ball_in_box_and_eps_zero(norm, eps_list):
  run = _mpgd(steps=4, norm=norm)
  for eps in eps_list:
    x_adv = run(X, Y, KEY, jnp.float32(eps), jnp.float32(eps / 3))
    assert_valid(x_adv, X, eps, norm)  # X has pixels exactly at 0 and 1
    if eps == 0:
      np.testing.assert_array_equal(x_adv, X)


# ---------------------------------------------------------------- equal to separate targeted PGD runs

@pytest.mark.parametrize("options,layouts", [
    (dict(), LAYOUTS),
    (dict(loss="margin", include_true_class=False, restarts=2, norm="l2"), ("loop", "batch")),
])
def test_equals_targeted_pgd_per_target_combined(options, layouts):
  eps = 1.0 if options.get("norm") == "l2" else 0.15
  kw = dict(eps=eps, step_size=eps / 4, steps=4, **options)
  expected = _reference(X, Y, KEY, **kw)
  assert np.any(np.argmax(mlp_apply(MLP, jnp.asarray(expected)), 1) != np.asarray(Y))  # some runs fool
  for layout in layouts:
    got = multi_targeted_pgd(_model(), X, Y, KEY, layout=layout, **kw)
    np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=layout)


# ---------------------------------------------------------------- per-example randomness

def test_batch_equals_its_halves():
  run = _mpgd(steps=4)
  keys = example_keys(KEY, B)
  whole = run(X, Y, KEY, jnp.float32(0.2), jnp.float32(0.05))
  h = B // 2
  first = run(X[:h], Y[:h], keys[:h], jnp.float32(0.2), jnp.float32(0.05))
  second = run(X[h:], Y[h:], keys[h:], jnp.float32(0.2), jnp.float32(0.05))
  np.testing.assert_allclose(np.concatenate([first, second]), whole, atol=1e-6)
  other_key = run(X, Y, jax.random.key(1), jnp.float32(0.2), jnp.float32(0.05))
  assert not np.array_equal(other_key, whole)


# ---------------------------------------------------------------- strength on a trained model

def test_at_least_as_strong_as_pgd_on_a_trained_digits_mlp():
  """Bui et al. 2020 (ADR) report mPGD accuracy <= PGD accuracy; on a digits MLP (~97% clean) at the same
  budget (20 steps, eps 0.1, step 0.025) mPGD must leave no more points robust than untargeted PGD, and the
  points PGD breaks but mPGD does not must be rare."""
  _, model = train_digits("mlp")
  x, y = digits_test(200)
  kw = dict(eps=0.1, step_size=0.025, steps=20)
  x_pgd = jax.jit(lambda x, y, k: pgd(model, x, y, k, **kw))(x, y, KEY)
  x_m = jax.jit(lambda x, y, k: multi_targeted_pgd(model, x, y, k, **kw))(x, y, KEY)
  assert_valid(x_m, x, 0.1)
  robust_pgd = np.asarray(jnp.argmax(model(x_pgd), 1) == y)
  robust_m = np.asarray(jnp.argmax(model(x_m), 1) == y)
  clean = float(jnp.mean(jnp.argmax(model(x), 1) == y))
  assert clean > 0.9
  assert 0.05 < robust_pgd.mean() < clean  # the budget leaves something to compare
  assert robust_m.mean() <= robust_pgd.mean(), (robust_m.mean(), robust_pgd.mean())
  assert np.mean(robust_m & ~robust_pgd) <= 0.02


# ---------------------------------------------------------------- evaluator, registry, CLI

def test_through_the_evaluator_with_max_examples():
  from jaxrobust.data import ArrayDataset
  from jaxrobust.evaluate.robust import RobustEvaluator
  params, model = train_digits("mlp")
  x, y = digits_test(150)
  data = ArrayDataset(np.asarray(x), np.asarray(y), 10, "digits_tail")
  apply = lambda v, xb: model.func(v, xb)  # noqa: E731
  pgd_spec = {"name": "pgd", "label": "pgd", "eps": 0.1, "steps": 10, "step_size": 0.025}
  m_spec = {"name": "mpgd", "label": "mpgd", "eps": 0.1, "steps": 10, "step_size": 0.025, "max_examples": 100}
  r = RobustEvaluator(apply).evaluate(params, data, [pgd_spec, m_spec], batch_size=64, progress=False,
                                      keep_adversarials=True)
  assert r["n"] == 150 and r["n_attacked"] == {"pgd": 150, "mpgd": 100}
  assert r["robust_acc"]["mpgd"] <= r["clean_acc"]
  assert r["robust_acc"]["mpgd"] <= r["robust_flags"]["pgd"][:100].mean()
  assert_valid(jnp.asarray(r["adversarials"]["mpgd"]), x[:100], 0.1)


def test_registry_alias_options_and_refusals():
  assert {"mpgd", "multi_targeted_pgd"} <= set(registry.attack_names())
  assert "multi-targeted PGD" in registry.attack_info("mpgd").summary
  params = registry.attack_parameters("mpgd")
  for name in ("eps", "step_size", "steps", "norm", "loss", "include_true_class", "restarts", "layout"):
    assert name in params
  assert params["steps"].default == 20 and params["include_true_class"].default is True
  a = registry.get_attack("mpgd", eps=0.1, step_size=0.03, steps=1)(_model(), X, Y, KEY)
  b = registry.get_attack("multi_targeted_pgd", eps=0.1, step_size=0.03, steps=1)(_model(), X, Y, KEY)
  np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="no parameter 'bogus'"):
    registry.get_attack("mpgd", eps=0.1, bogus=1)
  with pytest.raises(ValueError, match="'mpgd' needs eps"):
    registry.get_attack("mpgd", steps=3)
  with pytest.raises(ValueError, match="include_true_class=False"):
    multi_targeted_pgd(_model(), X, Y, KEY, eps=0.1, loss="margin")
  with pytest.raises(ValueError, match="unknown mPGD layout"):
    multi_targeted_pgd(_model(), X, Y, KEY, eps=0.1, layout="scan")
  with pytest.raises(ValueError, match="unknown mPGD loss"):
    multi_targeted_pgd(_model(), X, Y, KEY, eps=0.1, loss="dlr")


def test_cli_lists_its_parameters(capsys):
  from jaxrobust.cli import main
  assert main(["list", "--attack", "mpgd"]) == 0
  out = capsys.readouterr().out
  for text in ("multi-targeted PGD", "linf, l2, l1", "steps=20", "include_true_class=True", "layout='loop'",
               "loss='ce'"):
    assert text in out, text
