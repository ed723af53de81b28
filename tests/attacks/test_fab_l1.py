"""FAB-L1 (the L1 step of ``fab_projections.projection_l1``) and AutoAttack's L1 cascade."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust import threat
from jaxrobust.attacks import autoattack as AA
from jaxrobust.attacks import fab as F
from tests.attacks import aa_helpers as h

KEY = jax.random.key(0)


def test_l1_hyperplane_step_is_the_l1_minimal_box_step():
  """Against scipy's LP: min ||d||_1 s.t. <w, t + d> = b, 0 <= t + d <= 1 (where reachable)."""
  from scipy.optimize import linprog
  rng = np.random.default_rng(0)
  n, d = 12, 16  # d a power of two: the reference's log2(d)-step search may stop short there; ours is exact
  t = rng.uniform(size=(n, d)).astype(np.float32)
  w = rng.normal(size=(n, d)).astype(np.float32)
  b = (np.sum(w * t, 1) + rng.normal(scale=1.0, size=n)).astype(np.float32)
  dj = np.asarray(F.project_onto_hyperplane(jnp.asarray(t), jnp.asarray(w), jnp.asarray(b), "l1"))
  assert np.all(t + dj >= -1e-6) and np.all(t + dj <= 1 + 1e-6)
  for i in range(n):
    # d = p - q, p, q >= 0; minimise sum(p + q).
    res = linprog(np.ones(2 * d), A_eq=np.concatenate([w[i], -w[i]])[None].astype(np.float64),
                  b_eq=[float(b[i] - w[i] @ t[i])], bounds=[(0, 1 - t[i, j]) for j in range(d)]
                  + [(0, t[i, j]) for j in range(d)], method="highs")
    if res.status == 0:
      assert abs(np.abs(dj[i]).sum() - res.fun) <= 1e-4 * (1 + res.fun), (i, np.abs(dj[i]).sum(), res.fun)
      assert abs(w[i] @ (t[i] + dj[i]) - b[i]) <= 1e-4 * (1 + abs(b[i]))
    else:  # unreachable: the full move to the box corner that gets closest
      corner = np.where(np.sign(w[i] @ t[i] - b[i]) * w[i] > 0, 0.0, 1.0)
      np.testing.assert_allclose(t[i] + dj[i], corner, atol=1e-6)


def test_fab_l1_outputs_within_eps_and_fooled():
  _, f = h.train_digits("mlp")
  x, y = h.digits_test(48)
  eps = 1.5
  for xa in (F.fab(f, x, y, KEY, eps=eps, norm="l1", n_iter=20),
             F.fab_targeted(f, x, y, KEY, eps=eps, norm="l1", n_iter=20, n_target_classes=3)):
    dist = np.asarray(threat.per_example_norm(xa - x, "l1"))
    changed = dist > 0
    assert np.all(dist <= eps + 1e-5) and float(xa.min()) >= 0 and float(xa.max()) <= 1
    pred = np.asarray(jnp.argmax(f(xa), 1))
    assert np.all(pred[changed] != np.asarray(y)[changed]) and changed.sum() > 5
  r = F.fab_min_norm(f, x, y, KEY, norm="l1", n_iter=20)
  ok = np.asarray(r.norm) < 1e10
  np.testing.assert_allclose(np.asarray(threat.per_example_norm(r.adv - x, "l1"))[ok], np.asarray(r.norm)[ok],
                             rtol=1e-5)


@pytest.mark.slow  # ~150 s on a loaded 2-core machine: the whole L1 cascade twice (images, vectors); -m slow
def test_autoattack_l1_cascade_and_report():
  stages = dict(AA.cascade("standard", norm="l1", num_classes=10))
  assert list(stages) == ["apgd-ce", "apgd-t", "fab-t", "square"]
  assert stages["apgd-ce"]["n_restarts"] == 5 and stages["apgd-ce"]["use_largereps"]
  assert stages["apgd-t"]["n_target_classes"] == 5 and stages["apgd-t"]["use_largereps"]
  assert stages["fab-t"]["n_target_classes"] == 9
  with pytest.raises(ValueError, match="no L1 cascade"):
    AA.cascade("plus", norm="l1")
  assert stages["square"]["n_queries"] == 5000 and stages["square"]["p_init"] == 0.8
  _, f = h.train_digits("mlp")
  x, y = h.digits_test(24)
  kw = {"apgd-ce": {"n_iter": 10, "n_restarts": 2}, "apgd-t": {"n_iter": 10, "n_target_classes": 2},
        "fab-t": {"n_iter": 10, "n_target_classes": 2}, "square": {"n_queries": 50}}
  xa, rep = AA.run_autoattack(f, x, y, KEY, eps=1.5, norm="l1", attack_kwargs=kw)
  assert rep["omitted"] == [] and rep["norm"] == "l1" and rep["attacks"][-1] == "square"
  # On feature vectors (no image grid) the cascade drops Square-L1, warns and reports it.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    _, rep_flat = AA.run_autoattack(lambda v: f(v.reshape(-1, 8, 8, 1)), x[:8].reshape(8, -1), y[:8], KEY,
                                    eps=1.5, norm="l1", attack_kwargs=kw)
  assert any("Square-L1 needs NHWC images" in str(c.message) for c in caught)
  assert rep_flat["omitted"] == ["square"] and "square" not in rep_flat["attacks"]
  assert rep["max_perturbation"] <= 1.5 * (1 + 1e-5) + 1e-6 and float(xa.min()) >= 0 and float(xa.max()) <= 1
  accs = list(rep["robust_accuracy_after"].values())
  assert accs == sorted(accs, reverse=True) and accs[-1] < rep["clean_accuracy"]
  # Every point the cascade calls broken is misclassified at the returned x_adv.
  pred = np.asarray(jnp.argmax(f(xa), 1))
  assert np.all((pred != np.asarray(y)) | np.asarray(rep["robust"]))
