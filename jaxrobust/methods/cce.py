"""Crossing Collaborative Ensemble, CCE (Bui et al. 2021, AAAI, "Improving ensemble robustness by
collaboratively promoting and demoting adversarial robustness").

Each member n has its own white-box adversarial example x_a^n = PGD(f^n, x). Member n is trained by

    L^n = C(f^n(x), y) + w_ce C(f^n(x_a^n), y)                                        (dPO)
          + 1/(N-1) sum_{i != n} [ lambda_pm s_{n,i} C(f^n(x_a^i), y)                   (cPO)
                                   - lambda_dm (1 - s_{n,i}) H(f^n(x_a^i)) ]           (DO)
    s_{n,i} = stopgrad(p^n_y(x_a^i)),     L = sum_n L^n, averaged over the batch      (Bui et al. 2021, Eqs. 3-4)

i.e. member n is *promoted* (cross-entropy) on another member's adversarial example where it is already right
and *demoted* (pushed to the uniform prediction, maximal entropy) where it is wrong, so that an example that
fools one member is either resisted or ignored by the others. Presets: 'rm' (lambda_pm, lambda_dm) = (1, 1),
'dm' (0, 5), 'base' (0, 0).

Choices where the paper and its code differ (each a flag):
* ``stop_gradient_s`` (True, the thesis): the code (``lib_method.py::adv_CCE``) differentiates through s.
* ``code_faithful_terms`` (False): True uses the code's terms, TF1's ``softmax_cross_entropy_with_logits_v2``
  applied to *probabilities*: cPO ce = LSE(p) - p_y, DO "entropy" = LSE(p) - sum_k p_k^2, and the DO weight
  (1.0000001 - s). The clean and dPO terms are true cross-entropies in both forms (Keras's CE on
  probabilities clips p to [1e-7, 1 - 1e-7]; that clip is not reproduced).
* 'dm' trains with w_ce = 0 (no dPO): the code's DM run (``run_cifar10.py``, ``wce=0, wdm=5``), the setting
  consistent with the 86-91 % natural accuracy of the thesis's Table 7; the thesis only gives lambdas.
  An explicit ``w_ce`` overrides.
* ``attack_label``: 'label' (true y; the thesis) or 'prediction' (the member's own clean prediction: the
  code's cleverhans PGD is given no y).
* Batch norm: the loss calls the ensemble once per input batch (x, x_a^1, ..., x_a^N; N + 1 train-mode
  forwards, each running every member: the N + N^2 member forwards), so BN normalises each batch by its own
  statistics as the Keras code does (each member called per input batch). ``joint_forward=True`` runs one
  forward on concat(x, x_a^1..x_a^N) instead: the same work, but the BN batch statistics then mix clean and
  adversarial examples.
* The training attacks run in inference mode (running BN statistics), through ``ctx.member_forward``: one PGD on
  the stacked (M, B, ...) input whose loss sums over members, so each member follows its own gradient.
* ``eps_range`` = (lo, hi): one training eps ~ U(lo, hi) per batch, step eps / 10 (the ADP setting the thesis's
  ResNet runs use).

Metrics: 'acc' the ensemble's clean accuracy; 'adv_acc' the ensemble's accuracy on the members' adversarial
examples (mean over i of acc(f^en(x_a^i))); 'adv_acc_member<n>' member n on its own x_a^n. The code also logs
the ensemble's accuracy on x_a^en = PGD(f^en); that costs a third attack and is not computed here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrobust import losses as losses_lib
from jaxrobust.attacks.per_example import example_keys
from jaxrobust.attacks.pgd import pgd
from jaxrobust.methods.adr import entropy
from jaxrobust.methods.base import LossAux, Method, StepContext, accuracy, masked_mean, stop
from jaxrobust.methods.common import check_threat
from jaxrobust.models.ensemble import num_members_of
from jaxrobust.types import Array

# (lambda_pm, lambda_dm, w_ce) of the paper's variants.
MODES = {"rm": (1.0, 1.0, 1.0), "dm": (0.0, 5.0, 0.0), "base": (0.0, 0.0, 1.0)}
ATTACK_LABELS = ("label", "prediction")
# The code's DO weight is (1.0000001 - s) (lib_method.py::adv_CCE).
CODE_DO_OFFSET = 1.0000001


# ----------------------------------------------------------------------------------------
# Ensembles only
# ----------------------------------------------------------------------------------------

def ensemble_required_error(method: str) -> ValueError:
  return ValueError(
      f"{method} trains an ensemble, but the model is a single network: build an ensemble of M >= 2 members "
      f"(config: model.members=2; code: jaxrobust.models.get_model(name, num_classes, members=2))")


def require_member_forward(method: str, ctx: StepContext):
  """ctx.member_forward, or the error naming the fix (raised when the train step is traced)."""
  if ctx.member_forward is None:
    raise ensemble_required_error(method)
  return ctx.member_forward


def require_member_logits(method: str, out) -> Array:
  """(M, B, K) member logits of a forward's ModelOutput, or the error naming the fix."""
  if getattr(out, "member_logits", None) is None:
    raise ensemble_required_error(method)
  return out.member_logits


# ----------------------------------------------------------------------------------------
# Per-member losses on stacked logits
# ----------------------------------------------------------------------------------------

def member_cross_entropy(logits: Array, y: Array) -> Array:
  """(..., B, K) logits, (B,) labels -> (..., B) CE(softmax(z), y) (``losses.cross_entropy`` per member)."""
  labels = jnp.broadcast_to(y, logits.shape[:-1]).reshape(-1)
  return losses_lib.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels).reshape(logits.shape[:-1])


def true_class_prob(logits: Array, y: Array) -> Array:
  """(..., B, K), (B,) -> (..., B) p_y = softmax(z)_y."""
  p = jax.nn.softmax(logits, axis=-1)
  return jnp.take_along_axis(p, jnp.broadcast_to(y, logits.shape[:-1])[..., None].astype(jnp.int32), -1)[..., 0]


def code_double_softmax_terms(logits: Array, y: Array) -> tuple[Array, Array]:
  """The CCE code's cPO and DO terms: TF1 ``softmax_cross_entropy_with_logits_v2`` fed probabilities.

  (..., B, K), (B,) -> (ce, ent), each (..., B): with p = softmax(z) and LSE(p) = log sum_k exp(p_k),
    ce  = CE(labels=onehot(y), logits=p) = LSE(p) - p_y
    ent = CE(labels=p, logits=p)         = LSE(p) - sum_k p_k^2   (gradient into both arguments)
  """
  p = jax.nn.softmax(logits, axis=-1)
  lse = jax.nn.logsumexp(p, axis=-1)
  return lse - true_class_prob(logits, y), lse - jnp.sum(p * p, axis=-1)


def cross_term(logits: Array, y: Array, *, lambda_pm: float, lambda_dm: float, stop_gradient_s: bool = True,
               code_faithful_terms: bool = False) -> Array:
  """Member n on member i's adversarial example (i != n), before the 1/(N-1) average: (..., B, K) -> (..., B)

      lambda_pm s C(f^n(x_a^i), y) - lambda_dm (1 - s) H(f^n(x_a^i)),   s = p^n_y(x_a^i)

  (Bui et al. 2021, Eq. 4), s a constant with ``stop_gradient_s``; the code's terms with ``code_faithful_terms``
  (``code_double_softmax_terms`` and the weight (1.0000001 - s)).
  """
  s = true_class_prob(logits, y)
  if stop_gradient_s:
    s = stop(s)
  if code_faithful_terms:
    ce, ent = code_double_softmax_terms(logits, y)
    return lambda_pm * s * ce - lambda_dm * (CODE_DO_OFFSET - s) * ent
  return lambda_pm * s * member_cross_entropy(logits, y) - lambda_dm * (1.0 - s) * entropy(logits)


def cce_member_losses(clean_logits: Array, adv_logits: Array, y: Array, *, lambda_pm: float, lambda_dm: float,
                      w_ce: float = 1.0, stop_gradient_s: bool = True, code_faithful_terms: bool = False) -> Array:
  """Per-member, per-example CCE loss L^n (Bui et al. 2021, Eq. after (4)).

  clean_logits: (N, B, K), member n on x.
  adv_logits: (N, N, B, K), [n, i] = member n on x_a^i (member i's adversarial example).
  Returns (N, B): C(f^n(x), y) + w_ce C(f^n(x_a^n), y) + 1/(N-1) sum_{i != n} cross_term(f^n(x_a^i)).
  """
  n = clean_logits.shape[0]
  if adv_logits.shape[:2] != (n, n):
    raise ValueError(f"adv_logits must be (N, N, B, K) with N = {n} members; got {adv_logits.shape}")
  idx = jnp.arange(n)
  direct = member_cross_entropy(adv_logits[idx, idx], y)                          # (N, B)
  cross = cross_term(adv_logits, y, lambda_pm=lambda_pm, lambda_dm=lambda_dm,
                     stop_gradient_s=stop_gradient_s, code_faithful_terms=code_faithful_terms)  # (N, N, B)
  off_diagonal = (1.0 - jnp.eye(n, dtype=cross.dtype))[:, :, None]
  crossing = jnp.sum(cross * off_diagonal, axis=1) / max(n - 1, 1)
  return member_cross_entropy(clean_logits, y) + w_ce * direct + crossing


# ----------------------------------------------------------------------------------------
# Every member's own PGD, in one program
# ----------------------------------------------------------------------------------------

def member_keys(key, num_members: int, batch_size: int) -> Array:
  """(M * B,) per-example keys, member m's rows example_keys(fold_in(key, m), B): member m's attack is
  reproduced by ``pgd`` on member m alone with key fold_in(key, m)."""
  return jnp.concatenate([example_keys(jax.random.fold_in(key, m), batch_size) for m in range(num_members)])


def member_pgd(member_forward, params, batch_stats, x: Array, labels: Array, key, *, eps, step_size, steps: int,
               init: str = "uniform") -> Array:
  """x_a^m = PGD(f^m, x; labels[m]) for every member m, as one PGD on the stacked input.

  member_forward: (params, batch_stats, xs (M, B, ...)) -> (M, B, K), member m on xs[m] (``ctx.member_forward``).
  x: (B, ...) in [0, 1]; labels: (M, B) attack labels of each member. Returns (M, B, ...), x_a^m in the eps-ball
  around x and the [0, 1] box. The attack maximises sum_m sum_b CE(f^m(x_a^m)_b, labels[m, b]); member m's
  input only reaches member m's loss, so every member follows its own gradient (and its own per-example start).
  """
  m, b = labels.shape
  shape = x.shape[1:]
  xs = jnp.broadcast_to(x[None], (m, b) + shape).reshape((m * b,) + shape)

  def logits_fn(flat):
    z = member_forward(params, batch_stats, flat.reshape((m, b) + shape))
    return z.reshape((m * b,) + z.shape[2:])

  x_adv = pgd(logits_fn, xs, labels.reshape(-1), member_keys(key, m, b), eps=eps, step_size=step_size,
              steps=steps, init=init)
  return stop(x_adv.reshape((m, b) + shape))


def attack_labels(kind: str, clean_logits: Array, y: Array) -> Array:
  """(M, B) labels each member's attack moves away from: y ('label') or its own clean prediction
  ('prediction', cleverhans's default when no y is given). clean_logits: (M, B, K)."""
  if kind == "label":
    return jnp.broadcast_to(y, clean_logits.shape[:2]).astype(jnp.int32)
  return losses_lib.predict(clean_logits.reshape(-1, clean_logits.shape[-1])).reshape(clean_logits.shape[:2])


# fold_in data of the per-batch eps draw, so the attack's own keys are those of a fixed-eps run
_EPS_FOLD = 0x657073


def check_eps_range(method: str, eps_range) -> tuple[float, float] | None:
  """None, or (lo, hi) with 0 <= lo <= hi, as a tuple of floats."""
  if eps_range is None:
    return None
  if len(eps_range) != 2 or not 0 <= eps_range[0] <= eps_range[1]:
    raise ValueError(f"{method} eps_range must be (lo, hi) with 0 <= lo <= hi; got {eps_range!r}")
  return float(eps_range[0]), float(eps_range[1])


def batch_threat(key, eps, step_size, eps_range: tuple[float, float] | None):
  """(eps, step_size) of one batch: the fixed ones, or with ``eps_range`` = (lo, hi) one eps ~ U(lo, hi) for the
  whole batch and step eps / 10: the ADP setting (Pang et al. 2019's code) the CCE thesis's ResNet runs train
  with (eps ~ U(0.01, 0.05), eta = eps / 10, the ADP setting of Pang et al. 2019)."""
  if eps_range is None:
    return eps, step_size
  e = jax.random.uniform(jax.random.fold_in(key, _EPS_FOLD), (), minval=eps_range[0], maxval=eps_range[1])
  return e, e / 10.0


def check_attack_label(method: str, kind: str) -> None:
  if kind not in ATTACK_LABELS:
    raise ValueError(f"{method} attack_label must be one of {ATTACK_LABELS}; got {kind!r}")


# ----------------------------------------------------------------------------------------
# The method
# ----------------------------------------------------------------------------------------

def resolve_mode(mode: str, lambda_pm: float | None, lambda_dm: float | None, w_ce: float | None):
  """(lambda_pm, lambda_dm, w_ce) of a preset, each overridden when given."""
  if mode not in MODES:
    raise ValueError(f"cce mode must be one of {tuple(MODES)}; got {mode!r}")
  preset = MODES[mode]
  values = tuple(float(p if v is None else v) for p, v in zip(preset, (lambda_pm, lambda_dm, w_ce)))
  if min(values) < 0:
    raise ValueError(f"cce lambda_pm, lambda_dm, w_ce must be >= 0; got {values}")
  return values


def make_cce(*, mode: str = "rm", lambda_pm: float | None = None, lambda_dm: float | None = None,
             w_ce: float | None = None, eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10,
             init: str = "uniform", attack_label: str = "label", stop_gradient_s: bool = True,
             code_faithful_terms: bool = False, joint_forward: bool = False,
             eps_range: tuple[float, float] | None = None) -> Method:
  """CCE (Bui et al. 2021); see the module docstring. Needs an ensemble model (``get_model(..., members=N)``).

  eps_range: (lo, hi) draws the training eps per batch, step eps / 10 (``batch_threat``); eps and step_size are
    then unused.
  """
  lam_pm, lam_dm, wce = resolve_mode(mode, lambda_pm, lambda_dm, w_ce)
  check_threat("cce", eps, step_size, steps)
  check_attack_label("cce", attack_label)
  eps_range = check_eps_range("cce", eps_range)

  def attack(params, batch_stats, batch, key, method_state, ctx):
    member_forward = require_member_forward("cce", ctx)
    x, y = batch["image"], batch["label"]
    if attack_label == "prediction":
      clean = require_member_logits("cce", ctx.eval_forward(params, batch_stats, x))      # (M, B, K)
      labels = attack_labels("prediction", clean, y)
    else:
      num = num_members_of({"params": params})
      labels = jnp.broadcast_to(y, (num,) + y.shape).astype(jnp.int32)
    batch_eps, batch_step = batch_threat(key, eps, step_size, eps_range)
    return member_pgd(member_forward, params, batch_stats, x, labels, key, eps=batch_eps, step_size=batch_step,
                      steps=steps, init=init), None

  def loss(params, batch_stats, batch, x_adv, attack_aux, method_state, key, ctx):
    x, y, mask = batch["image"], batch["label"], batch.get("mask")
    n, b = x_adv.shape[0], x.shape[0]
    if joint_forward:
      out, batch_stats = ctx.forward(params, batch_stats, jnp.concatenate([x, x_adv.reshape((-1,) + x.shape[1:])]))
      z = require_member_logits("cce", out)                                        # (N, (N+1) B, K)
      member_logits = z.reshape((z.shape[0], n + 1, b, z.shape[-1]))
      ensemble_logits = out.logits.reshape((n + 1, b, -1))
    else:
      outs = []
      for inputs in (x, *(x_adv[i] for i in range(n))):
        out, batch_stats = ctx.forward(params, batch_stats, inputs)
        outs.append(out)
      member_logits = jnp.stack([require_member_logits("cce", o) for o in outs], axis=1)  # (N, N+1, B, K)
      ensemble_logits = jnp.stack([o.logits for o in outs])                        # (N+1, B, K)
    if member_logits.shape[0] != n:
      raise ValueError(f"cce: {n} adversarial batches for an ensemble of {member_logits.shape[0]} members")
    per_member = cce_member_losses(member_logits[:, 0], member_logits[:, 1:], y, lambda_pm=lam_pm,
                                   lambda_dm=lam_dm, w_ce=wce, stop_gradient_s=stop_gradient_s,
                                   code_faithful_terms=code_faithful_terms)         # (N, B)
    total = masked_mean(jnp.sum(per_member, axis=0), mask)
    metrics = {"loss": total, "acc": accuracy(ensemble_logits[0], y),
               "adv_acc": jnp.mean(jnp.stack([accuracy(ensemble_logits[1 + i], y) for i in range(n)]))}
    for i in range(n):
      metrics[f"adv_acc_member{i}"] = accuracy(member_logits[i, 1 + i], y)
    return total, LossAux(batch_stats, method_state, metrics)

  return Method(name="cce", loss=loss, attack=attack,
                hparams=dict(mode=mode, lambda_pm=lam_pm, lambda_dm=lam_dm, w_ce=wce, eps=eps, step_size=step_size,
                             steps=steps, init=init, attack_label=attack_label, stop_gradient_s=stop_gradient_s,
                             code_faithful_terms=code_faithful_terms, joint_forward=joint_forward,
                             eps_range=eps_range))


REGISTRY = {"cce": make_cce}
