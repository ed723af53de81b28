"""ADR and ASCL against the authors' PyTorch losses (``benchmarks.torch_steps``: ``compact_loss_pt.py``,
``adr.py``, ``contrastive_losses_v2.py::soft_lcscl``, ``ascl.py::ascl_pgd`` restated), on fixed random
latents, logits and labels, in float64 on both sides: every term, its gradients w.r.t. the latents
and logits (so the stop-gradients are checked too), and the method losses' totals.

The two deliberate differences from the code (the jaxrobust defaults are the thesis's) are pinned
here as well: Leaked-ASCL's own counterpart is always a positive (``counterpart_always_positive=True``;
the code keeps it only when both predictions agree) and the VAT KL is per sample ('batchmean'; the
code's ``KLDivLoss(reduction='mean')`` divides by C too: 'elementmean'). ADR's label weights are 1
for a batch of one class, where the code divides 0 by 0.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.methods import adr, ascl, get_method
from jaxrobust.methods.base import StepContext
from jaxrobust.types import ModelOutput

torch = pytest.importorskip("torch")

from benchmarks import torch_steps as ts  # noqa: E402  (needs torch)

try:
  from tests.methods import method_harness as h
except ImportError:  # run from inside tests/methods
  import method_harness as h

pytestmark = pytest.mark.torch

C = 5
TOL = dict(rtol=1e-9, atol=1e-10)  # float64 on both sides; the brief asks for ~1e-6

STRATEGIES = {"global": "all", "hard": "hard", "soft": "soft", "leaked": "leaking", "merge": "merge"}
# jaxrobust (distance, normalize) -> the code's (dist, hidden_norm); cosine and linf are the two the
# thesis and the released code use, the rest are the code's other options (values only: the code's
# l2 differentiates sqrt(0) on the masked diagonal and returns NaN gradients).
DISTANCES = {"cosine": False, "linf": True, "l2": True, "l1": True, "lkinf": True, "matmul": True}


def _problem(seed, n=12, d=16, correct=0.6):
  """Latents, logits whose argmax is right with probability ~correct, labels (float64 numpy)."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, C, n)
  y[:2] = [0, 1]  # at least two classes (the code's label weights are 0/0 otherwise)

  def logits():
    lg = rng.standard_normal((n, C))
    hit = rng.random(n) < correct
    lg[hit, y[hit]] += 3.0
    return lg
  z = rng.standard_normal((n, d))
  za = z + 0.4 * rng.standard_normal((n, d))
  return z, za, logits(), logits(), y


def _t(a, grad=False):
  return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _ty(y):
  return torch.tensor(np.asarray(y), dtype=torch.int64)


def _torch_grads(value, tensors):
  grads = torch.autograd.grad(value, tensors, allow_unused=True)
  return [np.zeros(tuple(t.shape)) if g is None else g.numpy() for g, t in zip(grads, tensors)]


# ----------------------------------------------------------------------------------------
# ADR terms
# ----------------------------------------------------------------------------------------

ADR_KEYS = {"lc": "lc_com", "gb": "gb_com", "smt": "lc_smt", "conf": "conf", "gbsmt": "gb_smt"}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adr_terms_and_their_gradients_equal_the_torch_code(seed):
  z, za, l, la, y = _problem(seed)
  with h.x64():
    def terms(z, za, l, la):
      return adr.adr_terms(ModelOutput(l, z), ModelOutput(la, za), jnp.asarray(y), C)
    args = tuple(jnp.asarray(a) for a in (z, za, l, la))
    ours = jax.jit(terms)(*args)
    assert all(v.dtype == jnp.float64 for v in ours.values())
    ours_grads = {k: jax.jit(jax.grad(lambda *a, k=k: terms(*a)[k], argnums=(0, 1, 2, 3)))(*args) for k in ADR_KEYS}
  tz, tza, tl, tla = (_t(a, grad=True) for a in (z, za, l, la))
  theirs = ts.adr_terms(_ty(y), tz, tl, tza, tla, C)
  for k, tk in ADR_KEYS.items():
    np.testing.assert_allclose(float(ours[k]), theirs[tk].item(), **TOL, err_msg=k)
    for name, g_ours, g_theirs in zip(("z", "z_adv", "logits", "logits_adv"), ours_grads[k],
                                      _torch_grads(theirs[tk], [tz, tza, tl, tla])):
      np.testing.assert_allclose(np.asarray(g_ours), g_theirs, **TOL, err_msg=f"d {k} / d {name}")


def test_adr_label_weights_equal_the_code_and_differ_only_for_one_class():
  y = np.array([0, 3, 0, 2, 3, 3])
  with h.x64():
    ours = np.asarray(adr.label_weights(jnp.asarray(y), C, 0.99, dtype=jnp.float64))
  np.testing.assert_allclose(ours, ts.adr_label_weight(_ty(y), C, dtype=torch.float64).numpy(), **TOL)
  # A batch of one class: the code's max D = 0 gives W = 0/0; ours is W = 1 (spec 2.8 A8).
  one = np.zeros(4, int)
  assert np.all(np.isnan(ts.adr_label_weight(_ty(one), C).numpy()))
  assert np.all(np.asarray(adr.label_weights(jnp.asarray(one), C, 0.99)) == 1.0)


# ----------------------------------------------------------------------------------------
# ASCL contrastive loss
# ----------------------------------------------------------------------------------------

def _ascl_both(z, za, l, la, y, strategy, distance, tau, grads):
  normalize = DISTANCES[distance]
  pn, pa = l.argmax(1), la.argmax(1)
  with h.x64():
    def loss(z, za):
      return ascl.contrastive_loss(z, za, jnp.asarray(y), jnp.asarray(pn), jnp.asarray(pa), strategy=strategy,
                                   tau=tau, distance=distance, normalize=normalize,
                                   counterpart_always_positive=False).loss
    zj, zaj = jnp.asarray(z), jnp.asarray(za)
    ours = float(jax.jit(loss)(zj, zaj))
    ours_grads = [np.asarray(g) for g in jax.jit(jax.grad(loss, argnums=(0, 1)))(zj, zaj)] if grads else None
  tz, tza = _t(z, grad=True), _t(za, grad=True)
  onehot = lambda a: torch.nn.functional.one_hot(_ty(a), C).double()  # noqa: E731
  theirs = ts.ascl_soft_lcscl(torch.cat([tz, tza]), torch.cat([onehot(y), onehot(y)]),
                              torch.cat([onehot(pn), onehot(pa)]), distance, STRATEGIES[strategy],
                              hidden_norm=normalize, temperature=tau)
  theirs_grads = _torch_grads(theirs, [tz, tza]) if grads else None
  return ours, theirs.item(), ours_grads, theirs_grads


@pytest.mark.parametrize("tau", [0.07, 0.2])
@pytest.mark.parametrize("distance", ["cosine", "linf"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_contrastive_loss_and_gradients_equal_soft_lcscl(strategy, distance, tau):
  for seed in (0, 1):
    ours, theirs, g_ours, g_theirs = _ascl_both(*_problem(seed), strategy, distance, tau, grads=True)
    assert theirs > 0
    np.testing.assert_allclose(ours, theirs, **TOL)
    for name, a, b in zip(("z", "z_adv"), g_ours, g_theirs):
      np.testing.assert_allclose(a, b, **TOL, err_msg=f"d L / d {name}")


@pytest.mark.parametrize("distance", ["l2", "l1", "lkinf", "matmul"])
def test_contrastive_loss_other_distances_equal_soft_lcscl(distance):
  for strategy in ("global", "leaked"):
    ours, theirs, _, _ = _ascl_both(*_problem(3), strategy, distance, 0.1, grads=False)
    np.testing.assert_allclose(ours, theirs, **TOL)


def test_contrastive_loss_float32_is_close_to_the_codes_float64():
  """The method computes the loss in the latents' dtype (float32 in training); the code casts to float64."""
  z, za, l, la, y = _problem(4, n=32, d=64)
  for distance, tau in (("cosine", 0.07), ("linf", 0.2)):
    ours = float(ascl.contrastive_loss(jnp.asarray(z, jnp.float32), jnp.asarray(za, jnp.float32), jnp.asarray(y),
                                       jnp.asarray(l.argmax(1)), jnp.asarray(la.argmax(1)), tau=tau,
                                       distance=distance, normalize=DISTANCES[distance],
                                       counterpart_always_positive=False).loss)
    _, theirs, _, _ = _ascl_both(z, za, l, la, y, "leaked", distance, tau, grads=False)
    np.testing.assert_allclose(ours, theirs, rtol=2e-6)


def test_leaked_counterpart_rule_is_the_only_mask_difference():
  """counterpart_always_positive=True (the thesis) equals the code when every p_i == p'_i, and differs
  from it when they disagree for some i (the code then drops the pair from both sides)."""
  z, za, l, _, y = _problem(5)
  agree = _ascl_both(z, za, l, l + 0.01, y, "leaked", "cosine", 0.07, grads=False)[1]
  with h.x64():
    pred = jnp.asarray(l.argmax(1))
    def ours(la_pred):
      return float(ascl.contrastive_loss(jnp.asarray(z), jnp.asarray(za), jnp.asarray(y), pred, la_pred,
                                         tau=0.07, counterpart_always_positive=True).loss)
    np.testing.assert_allclose(ours(pred), agree, **TOL)
    flipped = (l.argmax(1) + 1) % C
    code = _ascl_both(z, za, l, np.eye(C)[flipped], y, "leaked", "cosine", 0.07, grads=False)[1]
    assert abs(ours(jnp.asarray(flipped)) - code) > 1e-3


# ----------------------------------------------------------------------------------------
# Method totals (method.loss on a context whose 'model' returns the given logits and latents)
# ----------------------------------------------------------------------------------------

def _packing_ctx():
  """The batch image is [logits | latents]; the 'model' splits it (logits scaled by params['w'] = 1)."""
  def eval_forward(params, batch_stats, x):
    return ModelOutput(params["w"] * x[:, :C], x[:, C:])
  return StepContext(forward=lambda p, b, x: (eval_forward(p, b, x), b), eval_forward=eval_forward,
                     step=jnp.asarray(0, jnp.int32), epoch=jnp.asarray(0.0, jnp.float32), num_classes=C)


def _method_total(method, z, za, l, la, y):
  """(total, d total / d (z, za, l, la)) of method.loss, float64."""
  with h.x64():
    def run(nat, adv):
      batch = {"image": nat, "label": jnp.asarray(y, jnp.int32)}
      value, _ = method.loss({"w": jnp.asarray(1.0, jnp.float64)}, {}, batch, adv, None, (), jax.random.key(0),
                             _packing_ctx())
      return value
    nat = jnp.asarray(np.concatenate([l, z], 1))
    adv = jnp.asarray(np.concatenate([la, za], 1))
    value, (g_nat, g_adv) = jax.jit(jax.value_and_grad(run, argnums=(0, 1)))(nat, adv)
    g_nat, g_adv = np.asarray(g_nat), np.asarray(g_adv)
  return float(value), [g_nat[:, C:], g_adv[:, C:], g_nat[:, :C], g_adv[:, :C]]


def _check_totals(ours, theirs_value, theirs_tensors):
  value, grads = ours
  np.testing.assert_allclose(value, theirs_value.item(), **TOL)
  for name, a, b in zip(("z", "z_adv", "logits", "logits_adv"), grads, _torch_grads(theirs_value, theirs_tensors)):
    np.testing.assert_allclose(a, b, **TOL, err_msg=f"d total / d {name}")


@pytest.mark.parametrize("weights", [dict(), dict(beta=6.0, conf=1.0, gbsmt=1.0),
                                     dict(beta=6.0, lc=0.5, gb=2.0, smt=0.0, conf=0.3, gbsmt=0.7)])
def test_adr_trades_total_equals_the_torch_code(weights):
  z, za, l, la, y = _problem(6)
  method = get_method("adr_trades", **weights)
  ours = _method_total(method, z, za, l, la, y)
  tensors = [_t(a, grad=True) for a in (z, za, l, la)]
  tz, tza, tl, tla = tensors
  w = dict(dict(beta=1.0, lc=1.0, gb=1.0, smt=1.0, conf=0.0, gbsmt=0.0), **weights)
  theirs, _ = ts.adr_loss(_ty(y), tz, tl, tza, tla, base="trades", beta=w["beta"], lccomw=w["lc"],
                          lcsmtw=w["smt"], gbcomw=w["gb"], gbsmtw=w["gbsmt"], confw=w["conf"])
  _check_totals(ours, theirs, tensors)


@pytest.mark.parametrize("natural_weight", [0.0, 1.0])
def test_adr_adv_total_equals_the_torch_code(natural_weight):
  z, za, l, la, y = _problem(7)
  ours = _method_total(get_method("adr_adv", natural_weight=natural_weight, conf=1.0, gbsmt=1.0), z, za, l, la, y)
  tensors = [_t(a, grad=True) for a in (z, za, l, la)]
  tz, tza, tl, tla = tensors
  theirs, _ = ts.adr_loss(_ty(y), tz, tl, tza, tla, base="adv", alpha=natural_weight, beta=1.0, gbsmtw=1.0,
                          confw=1.0)
  _check_totals(ours, theirs, tensors)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("distance,tau", [("linf", 0.2), ("cosine", 0.07)])
def test_ascl_adv_total_equals_the_torch_code(alpha, distance, tau):
  z, za, l, la, y = _problem(8)
  method = get_method("ascl", alpha=alpha, lambda_vat=2.0, tau=tau, distance=distance,
                      normalize=DISTANCES[distance], counterpart_always_positive=False,
                      vat_reduction="elementmean")
  ours = _method_total(method, z, za, l, la, y)
  tensors = [_t(a, grad=True) for a in (z, za, l, la)]
  tz, tza, tl, tla = tensors
  theirs, _ = ts.ascl_loss(_ty(y), tz, tl, tza, tla, dist=distance, hidden_norm=DISTANCES[distance],
                           temperature=tau, alpha=alpha, lcsmtw=2.0)
  _check_totals(ours, theirs, tensors)


def test_ascl_default_vat_is_the_codes_times_the_number_of_classes():
  """vat_reduction 'batchmean' (default, per-sample KL as the thesis) = C x the code's KLDivLoss('mean')."""
  z, za, l, la, y = _problem(9)
  kw = dict(alpha=1.0, lambda_scl=0.0, counterpart_always_positive=False)
  batchmean = _method_total(get_method("ascl", lambda_vat=2.0, **kw), z, za, l, la, y)[0]
  tensors = [_t(a) for a in (z, za, l, la)]
  code_c = ts.ascl_loss(_ty(y), tensors[0], tensors[2], tensors[1], tensors[3], gbcomw=0.0, lcsmtw=2.0 * C)[0]
  np.testing.assert_allclose(batchmean, code_c.item(), **TOL)
