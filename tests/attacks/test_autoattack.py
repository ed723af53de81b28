"""AutoAttack cascade: robust iff every component failed, resumable state, one compile per stage, and the
torchattacks cross-check."""

import collections
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import aa_helpers as h  # noqa: E402

from jaxrobust.attacks import apgd as A  # noqa: E402
from jaxrobust.attacks import autoattack as AA  # noqa: E402
from jaxrobust.attacks import fab as F  # noqa: E402
from jaxrobust.attacks import square as S  # noqa: E402

EPS = 0.08
KEY = jax.random.PRNGKey(0)


def _digits(n=64):
  _, f = h.train_digits("mlp")
  x, y = h.digits_test(n)
  y = y.at[:2].set((y[:2] + 1) % 10)  # two clean-misclassified points
  return h.traced(f), x, y


def _count_stage_traces(monkeypatch) -> collections.Counter:
  """Counter {'apgd' | 'fab' | 'square': stage calls that traced the model}, i.e. new compiled programs per
  component (one stage call runs one compiled program; a cached one replays without calling the model)."""
  traces = collections.Counter()
  real = AA._run_stage

  def counting(name, *args, **kwargs):
    before = h.TRACED_CALLS["model"]
    out = real(name, *args, **kwargs)
    traces[name.split("-")[0]] += h.TRACED_CALLS["model"] != before
    return out

  monkeypatch.setattr(AA, "_run_stage", counting)
  return traces


@pytest.fixture(scope="module")
def standard():
  f, x, y = _digits()
  x_adv, rep = AA.run_autoattack(f, x, y, KEY, eps=EPS)
  return f, x, y, x_adv, rep


def _fooled(f, x, y, adv):
  return np.asarray(jnp.argmax(f(adv), 1) != y)


def test_q3_robust_iff_every_component_failed(standard):
  f, x, y, x_adv, rep = standard
  clean = np.asarray(jnp.argmax(f(x), 1) == y)
  # Each component alone on the same points with the same key (per-example randomness makes the cascade's
  # stages reproduce these exactly on the points they attack).
  alone = {
      "apgd-ce": A.apgd(f, x, y, KEY, eps=EPS),
      "apgd-t": A.apgd_targeted(f, x, y, KEY, eps=EPS),
      "fab-t": F.fab_targeted(f, x, y, KEY, eps=EPS),
      "square": S.square(f, x, y, KEY, eps=EPS),
  }
  fooled = {k: _fooled(f, x, y, v) & clean for k, v in alone.items()}
  robust = clean & ~np.any(np.stack(list(fooled.values())), axis=0)
  np.testing.assert_array_equal(rep["robust"], robust)
  assert rep["robust_accuracy"] == robust.mean()
  for name, adv in alone.items():
    assert rep["robust_accuracy"] <= h.accuracy(f, adv, y), name
  assert not rep["robust"][:2].any()  # clean-misclassified points are non-robust
  assert rep["clean_accuracy"] == clean.mean()
  # Per-stage flags: monotone, consistent with the first fooling stage, and x_adv = that stage's point.
  prev = clean
  for name in rep["attacks"]:
    cur = rep["robust_after"][name]
    assert np.all(cur <= prev)
    np.testing.assert_array_equal(prev & ~cur, rep["fooled_by"][name])
    prev = cur
  first = rep["fooled_by"]["apgd-ce"]
  np.testing.assert_array_equal(np.asarray(x_adv)[first], np.asarray(alone["apgd-ce"])[first])
  # Final point-wise checks.
  xa, xn = np.asarray(x_adv), np.asarray(x)
  assert np.abs(xa - xn).reshape(64, -1).max() <= EPS + 1e-6 and xa.min() >= 0 and xa.max() <= 1
  broken = clean & ~rep["robust"]
  assert np.all(_fooled(f, x, y, x_adv)[broken])
  np.testing.assert_array_equal(xa[rep["robust"]], xn[rep["robust"]])
  assert 0.2 < rep["robust_accuracy"] < 0.8


def test_buckets_same_result_and_one_compile_per_stage(standard, monkeypatch):
  f, x, y, x_adv, rep = standard
  traces = _count_stage_traces(monkeypatch)
  counts = lambda: (traces["apgd"], traces["fab"], traces["square"])  # noqa: E731
  cascade = ["apgd-ce", "square"]
  xf, rf = AA.run_autoattack(f, x, y, KEY, eps=EPS, attacks=cascade, compact=False)  # whole batch, masked
  before = counts()
  xb, rb = AA.run_autoattack(f, x, y, KEY, eps=EPS, attacks=cascade, batch_size=16,
                             compact=False)  # 4 fixed buckets per stage
  after_first = counts()
  # One new program per stage, however many buckets ran.
  assert tuple(a - b for a, b in zip(after_first, before)) == (1, 0, 1)
  # Same per-example randomness; only float rounding of the model's matmuls differs between batch shapes.
  assert np.sum(rb["robust"] != rf["robust"]) <= 1
  assert np.abs(np.asarray(xb - x)).max() <= EPS + 1e-6
  # Other points, other numbers of robust points, other eps: no retracing.
  xs, ys = h.digits_test(128)
  AA.run_autoattack(f, xs[64:], ys[64:], jax.random.PRNGKey(5), eps=0.05, attacks=cascade, batch_size=16,
                    compact=False)
  AA.run_autoattack(f, xs[64:], ys[64:], jax.random.PRNGKey(5), eps=0.05, attacks=cascade, compact=False)
  assert counts() == after_first


def test_bucket_rows_padding_and_sizes():
  sizes = {AA.bucket_rows(n, 10_000) for n in range(1, 1025)}
  for n in range(1, 1025):
    r = AA.bucket_rows(n, 10_000)
    assert r >= n and (n <= 8 or r <= 1.25 * n + 1e-9), n
  for lo in (8, 16, 32, 64, 128, 256, 512):  # at most 4 shapes per octave
    assert len([r for r in sizes if lo < r <= 2 * lo]) <= 4
  assert AA.bucket_rows(100, 64) == 64 and AA.bucket_rows(3, 5) == 5
  for bad in ((0, 8), (4, 0), (2.5, 8)):
    with pytest.raises(ValueError, match="bucket_rows needs integers"):
      AA.bucket_rows(*bad)


def test_compact_buckets_follow_the_robust_points(standard, monkeypatch):
  # The default gathers the still-robust points before every target / restart: same flags as the masked
  # whole-batch run (up to float rounding between batch shapes), calls with at most 25% padding rows, and
  # one compiled program per bucket shape (the run index is traced).
  f, x, y, x_adv, rep = standard
  _, masked = AA.run_autoattack(f, x, y, KEY, eps=EPS, compact=False)
  assert np.sum(masked["robust"] != rep["robust"]) <= 1
  calls = []
  real = AA._run_stage

  def spy(name, cfg, fn, xc, yc, key, index, active, eps, norm, randomized, runs=None, **kw):
    calls.append((name, xc.shape[0], int(np.sum(active)), runs))
    return real(name, cfg, fn, xc, yc, key, index, active, eps, norm, randomized, runs, **kw)

  monkeypatch.setattr(AA, "_run_stage", spy)
  traces = _count_stage_traces(monkeypatch)
  _, again = AA.run_autoattack(f, x, y, KEY, eps=EPS)
  np.testing.assert_array_equal(again["robust"], rep["robust"])  # the fixture ran the same (compact) path
  assert (traces["apgd"], traces["fab"], traces["square"]) == (0, 0, 0)
  by_stage = {}
  for name, rows, n_active, runs in calls:
    assert rows == AA.bucket_rows(n_active, 64) and runs == (runs[0], runs[0] + 1)
    by_stage.setdefault(name, []).append((runs[0], n_active))
  assert [r for r, _ in by_stage["apgd-t"]] == list(range(len(by_stage["apgd-t"])))
  counts = [n for _, n in by_stage["apgd-t"]]
  assert counts == sorted(counts, reverse=True)  # later targets only see the points earlier ones left
  assert counts[0] == int(rep["robust_after"]["apgd-ce"].sum())


@pytest.mark.parametrize("component", ["apgd-t", "fab-t"])
def test_rows_reproduce_one_run_of_the_masked_core(component):
  # Row i of the (point, run) form does run run_i of point i: the same target, key and iterates as that run of
  # the masked core on the same batch (different programs, so equal up to float rounding).
  f, x, y = _digits()
  b = x.shape[0]
  idx, act, eps = jnp.arange(b), jnp.ones(b, bool), jnp.full((b,), EPS)
  run = jnp.asarray(np.arange(b) % 3)
  if component == "apgd-t":
    kw = dict(loss="dlr-targeted", n_target_classes=3, n_iter=20)
    rows, masked = A.apgd_rows, A.apgd_masked
  else:
    kw = dict(n_target_classes=3, n_iter=20, targeted=True)
    rows, masked = F.fab_rows, F.fab_masked
  adv_rows, fooled_rows = rows(f, x, y, KEY, idx, act, eps, run, **kw)
  for r in range(3):
    adv_r, fooled_r = masked(f, x, y, KEY, idx, act, eps, runs=(r, r + 1), **kw)
    m = np.asarray(run) == r
    np.testing.assert_array_equal(np.asarray(fooled_rows)[m], np.asarray(fooled_r)[m])
    np.testing.assert_allclose(np.asarray(adv_rows)[m], np.asarray(adv_r)[m], atol=1e-5)
  assert 0 < int(np.sum(fooled_rows)) < b
  for bad, match in ((jnp.full((b,), 3), r"in \[0, 3\)"), (jnp.full((b,), -1), r"in \[0, 3\)"),
                     (jnp.zeros((b + 1,), jnp.int32), "one run index per row"),
                     (jnp.zeros((b,), jnp.float32), "one run index per row")):
    with pytest.raises(ValueError, match=match):
      rows(f, x, y, KEY, idx, act, eps, bad, **kw)


def test_batch_targets_same_result_as_one_target_after_another(standard, monkeypatch):
  f, x, y, x_adv, rep = standard
  calls = []
  real = AA._run_stage

  def spy(name, *args, row_runs=None, **kw):
    calls.append((name, None if row_runs is None else np.asarray(row_runs)))
    return real(name, *args, row_runs=row_runs, **kw)

  monkeypatch.setattr(AA, "_run_stage", spy)
  xb, rb = AA.run_autoattack(f, x, y, KEY, eps=EPS, batch_targets=True, batch_size=64)
  # Every target of APGD-T / FAB-T ran in (point, target) rows: one call per bucket, each run index present.
  for stage in ("apgd-t", "fab-t"):
    runs = np.concatenate([r for n, r in calls if n == stage])
    assert all(r is not None for n, r in calls if n == stage) and set(runs.tolist()) == set(range(9))
  assert [n for n, r in calls if r is None] == ["apgd-ce", "square"]
  # The same points fall at the same stage, with the same adversarial points (up to float rounding between
  # bucket shapes).
  for name in rep["attacks"]:
    assert np.sum(rb["fooled_by"][name] != rep["fooled_by"][name]) <= 1, name
  assert np.sum(rb["robust"] != rep["robust"]) <= 1
  same = rb["fooled_by"]["apgd-t"] & rep["fooled_by"]["apgd-t"]
  assert same.sum() > 0
  np.testing.assert_allclose(np.asarray(xb)[same], np.asarray(x_adv)[same], atol=1e-4)
  with pytest.raises(ValueError, match="batch_targets needs compact=True"):
    AA.run_autoattack(f, x, y, KEY, eps=EPS, batch_targets=True, compact=False)


def test_eps0_scalar_vs_vector_and_determinism(standard):
  f, x, y, x_adv, rep = standard
  x0, r0 = AA.run_autoattack(f, x, y, KEY, eps=0.0)
  np.testing.assert_array_equal(np.asarray(x0), np.asarray(x))
  assert r0["robust_accuracy"] == r0["clean_accuracy"] == rep["clean_accuracy"]
  xv, rv = AA.run_autoattack(f, x, y, KEY, eps=jnp.full((64,), EPS))
  np.testing.assert_array_equal(np.asarray(xv), np.asarray(x_adv))
  np.testing.assert_array_equal(rv["robust"], rep["robust"])


def test_monotone_in_eps_and_zero_for_large_eps(standard):
  f, x, y, _, rep = standard
  accs = [AA.run_autoattack(f, x, y, KEY, eps=e)[1]["robust_accuracy"] for e in (0.02, 0.05)]
  accs += [rep["robust_accuracy"]]
  accs += [AA.run_autoattack(f, x, y, KEY, eps=e)[1]["robust_accuracy"] for e in (0.15, 0.4)]
  assert all(b <= a for a, b in zip(accs, accs[1:])), accs
  assert accs[-1] == 0.0


def test_state_save_and_resume(standard, tmp_path):
  f, x, y, x_adv, rep = standard
  path = tmp_path / "aa_state.npz"

  class Stop(Exception):
    pass

  def save_then_stop(state):
    state.save(path)
    if int(state.stage) == 2:
      raise Stop

  with pytest.raises(Stop):
    AA.run_autoattack(f, x, y, KEY, eps=EPS, on_stage_end=save_then_stop)
  state = AA.AutoAttackState.load(path)
  assert int(state.stage) == 2 and state.attacks == ("apgd-ce", "apgd-t", "fab-t", "square")
  seen = []
  xr, rr = AA.run_autoattack(f, x, y, KEY, eps=EPS, state=state, on_stage_end=lambda s: seen.append(int(s.stage)))
  assert seen == [3, 4]
  np.testing.assert_array_equal(np.asarray(xr), np.asarray(x_adv))
  np.testing.assert_array_equal(rr["robust"], rep["robust"])
  assert rr["robust_accuracy_after"] == rep["robust_accuracy_after"]
  with pytest.raises(ValueError, match="state was made for"):
    AA.run_autoattack(f, x, y, KEY, eps=EPS, norm="l2", state=state)


def test_versions_rand_and_registry():
  names = lambda v: [n for n, _ in AA.cascade(v)]  # noqa: E731
  assert names("standard") == ["apgd-ce", "apgd-t", "fab-t", "square"]
  assert names("plus") == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
  plus = dict(AA.cascade("plus"))
  assert plus["apgd-ce"]["n_restarts"] == 5 and plus["fab"]["n_restarts"] == 5 and plus["apgd-t"]["n_restarts"] == 1
  assert plus["square"]["n_queries"] == 5000 and plus["fab-t"]["n_target_classes"] == 9
  rand = dict(AA.cascade("rand"))
  assert list(rand) == ["apgd-ce", "apgd-dlr"] and rand["apgd-ce"]["eot_iter"] == 20
  assert dict(AA.cascade("standard", num_classes=5))["apgd-t"]["n_target_classes"] == 4

  f = h.random_model(7, "linear", 10, (4, 4, 1))
  x = h.random_images(8, 16, (4, 4, 1))
  y = jnp.argmax(f(x), 1)
  fr = lambda xa, key: f(xa) + 0.05 * jax.random.normal(key, (xa.shape[0], 10))  # noqa: E731
  # One EoT-20 stage of the 'rand' cascade on a randomised model (the full 'rand' run is in the slow tests).
  xa, rep = AA.run_autoattack(fr, x, y, KEY, eps=0.1, attacks=["apgd-dlr"], randomized=True,
                              attack_kwargs={"apgd-dlr": {"n_iter": 5, "eot_iter": 20}})
  assert rep["attacks"] == ["apgd-dlr"] and rep["cascade"][0][1]["eot_iter"] == 20
  assert np.abs(np.asarray(xa - x)).max() <= 0.1 + 1e-6
  with pytest.raises(ValueError, match="APGD components only"):
    AA.run_autoattack(fr, x, y, KEY, eps=0.1, randomized=True)
  with pytest.raises(ValueError, match="at least 4 classes"):
    f3 = h.random_model(0, "linear", 3, (4, 4, 1))
    AA.run_autoattack(f3, x, jnp.zeros((16,), jnp.int32), KEY, eps=0.1)

  from jaxrobust.attacks import registry
  for name in ("apgd_ce", "apgd_dlr", "apgd_t", "fab", "fab_t", "square", "autoattack"):
    assert name in registry.attack_names()


@pytest.mark.slow
def test_rand_and_plus_versions_run():
  f, x, y = _digits()
  kw = {"apgd-ce": {"n_iter": 20}, "apgd-dlr": {"n_iter": 20}, "fab": {"n_iter": 20}, "square": {"n_queries": 200},
        "apgd-t": {"n_iter": 20}, "fab-t": {"n_iter": 20}}
  xr, rr = AA.run_autoattack(lambda xa, k: f(xa), x, y, KEY, eps=EPS, version="rand", randomized=True,
                             attack_kwargs={"apgd-ce": {"n_iter": 20}, "apgd-dlr": {"n_iter": 20}})
  assert rr["attacks"] == ["apgd-ce", "apgd-dlr"] and rr["robust_accuracy"] < rr["clean_accuracy"]
  xa, rep = AA.run_autoattack(f, x, y, KEY, eps=EPS, version="plus", attack_kwargs=kw)
  assert rep["attacks"] == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
  assert np.abs(np.asarray(xa - x)).max() <= EPS + 1e-6
  alone = A.apgd(f, x, y, KEY, eps=EPS, n_iter=20, n_restarts=5)
  assert rep["robust_accuracy"] <= h.accuracy(f, alone, y)
  assert rep["robust_accuracy_after"]["apgd-ce"] == h.accuracy(f, alone, y)


@pytest.mark.slow
@pytest.mark.torch
def test_crosscheck_against_torchattacks():
  """AutoAttack's original parameters in both libraries on 200 digits (Square with 1000 queries to keep the
  torch side at a few minutes; the standalone script uses 5000)."""
  pytest.importorskip("torch")
  pytest.importorskip("torchattacks")
  from benchmarks import crosscheck_torchattacks as cc
  res = cc.run_crosscheck(n=200, norms=("linf",), square_queries=1000, verbose=False)
  print("\n" + cc.markdown(res))
  for row in res["rows"]:
    assert 0.2 <= row["torch"] <= 0.8, row
    assert abs(row["diff_pp"]) <= 2.5, row
