"""Square Attack: corner values, monotone margin, query budget, p schedule and the generic properties."""

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import aa_helpers as h  # noqa: E402

from jaxrobust.attacks import square as S  # noqa: E402

EPS = 0.08


def _digits(n=64):
  _, f = h.train_digits("mlp")
  x, y = h.digits_test(n)
  return f, x, y


def test_p_schedule_thresholds():
  p = lambda i: S.p_selection(i, 0.8, 5000, rescale=False)  # noqa: E731
  bounds = [(0, 1), (10, 1), (11, 2), (50, 2), (51, 4), (200, 4), (201, 8), (500, 8), (501, 16), (1000, 16),
            (1001, 32), (2000, 32), (2001, 64), (4000, 64), (4001, 128), (6000, 128), (6001, 256), (8000, 256),
            (8001, 512), (20000, 512)]
  for it, div in bounds:
    assert p(it) == pytest.approx(0.8 / div), it
  # The rescaled schedule (off in AutoAttack) maps it -> int(it / n_queries * 10000).
  assert S.p_selection(6, 0.8, 5000, rescale=True) == pytest.approx(0.4)
  sizes = S.window_sizes(5000, 8, 8)
  for it in (0, 11, 51, 201, 501, 1001, 4999):
    assert sizes[it] == max(int(round(math.sqrt(p(it) * 64))), 1)
  sizes2 = S.window_sizes(5000, 32, 32, norm="l2")
  assert np.all(sizes2 % 2 == 1) and sizes2.min() >= 3


@pytest.fixture(scope="module")
def runs():
  f, x, y = _digits(16)
  y = y.at[0].set((y[0] + 1) % 10)  # one clean-misclassified point
  return f, x, y, {n: S.square_run(f, x, y, jax.random.PRNGKey(0), eps=EPS, n_queries=n) for n in (0, 300)}


def test_q1_deltas_on_the_clipped_corners(runs):
  f, x, y, tr = runs
  xn = np.asarray(x)
  lo, hi = np.maximum(-EPS, -xn), np.minimum(EPS, 1 - xn)
  for t in tr.values():
    d = np.asarray(t.x_best) - xn
    on = np.isclose(d, lo, atol=1e-6) | np.isclose(d, hi, atol=1e-6)
    assert on.all()


def test_q1_margin_non_increasing_and_query_budget(runs):
  f, x, y, tr = runs
  t = tr[300]
  m = np.asarray(t.margin_steps)
  assert m.shape == (301, 16)
  active = np.arange(16) != 0
  assert np.all(np.diff(m[:, active], axis=0) <= 0)
  np.testing.assert_array_equal(m[0], np.asarray(tr[0].margin))
  nq = np.asarray(t.n_queries)
  assert nq.max() <= 300 + 1 and nq.min() >= 1
  assert nq[0] == 1  # the clean-misclassified point is never attacked
  # A point stops querying once fooled: queries = 1 + iterations while its margin was > 0.
  np.testing.assert_array_equal(nq[active], 1 + np.sum(m[:-1, active] > 0, axis=0))


def test_output_convention_determinism_scalar_vs_vector_eps0():
  f, x, y = _digits()
  k = jax.random.PRNGKey(0)
  adv = S.square(f, x, y, k, eps=EPS)
  changed = np.any(np.asarray(adv != x).reshape(len(x), -1), axis=1)
  assert 0 < changed.sum() < len(x)
  assert np.all(np.asarray(jnp.argmax(f(adv), 1) != y)[changed])
  np.testing.assert_array_equal(np.asarray(adv)[~changed], np.asarray(x)[~changed])
  assert np.abs(np.asarray(adv - x)).max() <= EPS + 1e-6
  np.testing.assert_array_equal(np.asarray(adv), np.asarray(S.square(f, x, y, k, eps=EPS)))
  np.testing.assert_array_equal(np.asarray(adv), np.asarray(S.square(f, x, y, k, eps=jnp.full((64,), EPS))))
  np.testing.assert_array_equal(np.asarray(S.square(f, x, y, k, eps=0.0)), np.asarray(x))
  # The window sequence comes from the key and the stripes from each point's index: attacking a subset gives the
  # same points (the reference shares windows too, but its stripes depend on the batch).
  sub = S.square_masked(h.model_fn("mlp", h.train_digits("mlp")[0]), x, y, k, jnp.arange(64),
                        jnp.arange(64) < 20, jnp.full((64,), EPS))[0]
  np.testing.assert_array_equal(np.asarray(sub)[:20], np.asarray(adv)[:20])
  np.testing.assert_array_equal(np.asarray(sub)[20:], np.asarray(x)[20:])


def test_l2_square_in_ball_and_monotone():
  f, x, y = _digits(16)
  eps = 0.5
  t = S.square_run(f, x, y, jax.random.PRNGKey(1), eps=eps, norm="l2", n_queries=100)
  d = np.asarray(t.x_best - x).reshape(16, -1)
  assert np.sqrt((d ** 2).sum(1)).max() <= eps + 1e-5
  assert np.asarray(t.x_best).min() >= 0 and np.asarray(t.x_best).max() <= 1
  assert np.all(np.diff(np.asarray(t.margin_steps), axis=0) <= 0)
  for s in (1, 3, 4, 7):
    e = S.eta_pattern(s)
    assert e.shape == (s, s) and np.isclose((e ** 2).sum(), 1.0)


def test_errors():
  f, x, y = _digits(4)
  with pytest.raises(ValueError, match="NHWC"):
    S.square(f, x.reshape(4, 64), y, jax.random.PRNGKey(0), eps=0.1)
  with pytest.raises(ValueError):
    S.square(f, x, y, jax.random.PRNGKey(0), eps=-1.0)


def test_l1_square_in_ball_box_monotone_and_per_example():
  f, x, y = _digits(16)
  eps = 2.0
  t = S.square_run(f, x, y, jax.random.PRNGKey(1), eps=eps, norm="l1", n_queries=60)
  d = np.asarray(t.x_best - x).reshape(16, -1)
  assert np.abs(d).sum(1).max() <= eps * (1 + 1e-5)
  assert np.asarray(t.x_best).min() >= 0 and np.asarray(t.x_best).max() <= 1
  assert np.all(np.diff(np.asarray(t.margin_steps), axis=0) <= 0)
  assert np.any(np.asarray(t.margin) < np.asarray(t.margin_steps)[0])  # the search moves
  for s in (1, 3, 4, 7):
    e = S.eta_pattern(s, "l1")
    assert e.shape == (s, s) and np.isclose(np.abs(e).sum(), 1.0)
  # A point's trajectory does not depend on the other points of its batch (per-example keys), and a second
  # call with new values of the same shapes reuses the compiled program.
  sub = S.square_run(f, x[:8], y[:8], jax.random.PRNGKey(1), eps=eps, norm="l1", n_queries=60)
  np.testing.assert_allclose(np.asarray(sub.x_best), np.asarray(t.x_best)[:8], atol=1e-6)
  sizes = S._square_masked_jit._cache_size()
  S.square_run(f, x[8:], y[8:], jax.random.PRNGKey(3), eps=eps, norm="l1", n_queries=60)
  assert S._square_masked_jit._cache_size() == sizes
  with pytest.raises(ValueError, match="height >= 5"):
    S.square(f, x[:, :4, :4], y, jax.random.PRNGKey(0), eps=eps, norm="l1")


@pytest.mark.parametrize("norm,eps,restarts", [("linf", EPS, 2),
                                               pytest.param("l2", 1.0, 1, marks=pytest.mark.slow),
                                               pytest.param("l1", 4.0, 1, marks=pytest.mark.slow)])
def test_compaction_gives_the_whole_batch_result(norm, eps, restarts, monkeypatch):
  """The query loop on the still-attacked points only (re-gathered every chunk) equals the one-program loop on
  the whole batch: every draw depends on the iteration and the point, never on the batch."""
  monkeypatch.setattr(S, "CHUNK_QUERIES", 60)
  f, x, y = _digits(24)
  y = y.at[3].set((y[3] + 1) % 10)  # a clean-misclassified point never moves
  active = jnp.arange(24) != 5  # an inactive point is never attacked
  fn = S.as_partial(f)
  args = (fn, x, y, jax.random.PRNGKey(3), jnp.arange(24), active, jnp.full((24,), eps))
  kw = dict(norm=norm, n_queries=300, n_restarts=restarts)
  compact_adv, compact_fooled = S.square_masked(*args, compact=True, **kw)
  whole_adv, whole_fooled = S.square_masked(*args, compact=False, **kw)
  assert 0 < int(whole_fooled.sum()) < 22  # points leave during the run and some stay
  np.testing.assert_array_equal(np.asarray(compact_fooled), np.asarray(whole_fooled))
  np.testing.assert_allclose(np.asarray(compact_adv), np.asarray(whole_adv), atol=1e-6)
