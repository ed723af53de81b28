"""The evaluator: one batch loop over a split, attacks from the registry, metrics as plug-ins.

``RobustEvaluator.points`` runs the model and every attack spec (``jaxrobust.evaluate.specs``) over
the split once: batched, sharded over the mesh, the last batch padded and masked (never dropped, so
every point counts once), attack a on the first ``max_examples`` points when its spec says so. Attack a draws
the randomness of dataset point i from fold_in(fold_in(key, a), i) (an ``attacks.per_example.IndexedKey``), so
the result does not depend on the batch size, on how the batch is split over devices, or on the host. It
returns per-point outputs (``jaxrobust.evaluate.metrics.Points``); ``evaluate`` turns them into a report with
metric plug-ins (clean accuracy, robust accuracy, and AP / robust AP for single-logit models by default).

Every attack is built by ``jaxrobust.attacks.registry.get_attack``. Each distinct spec compiles once:
eps is a traced argument (unless ``trace_eps=False``), so an eps sweep reuses one program. The spec keys
``two_class_logits`` and ``source`` (``specs.py``) choose what the attack crafts on; the evaluated model
always scores the result. A cascade with host-side control
(registry ``jittable=False``, e.g. AutoAttack) runs eagerly with its stages jitted inside, over the evaluator's
mesh when it takes a ``mesh`` (AutoAttack re-balances its still-robust points over the devices between stages).

Devices and hosts: every batch is split over the mesh (default all devices, across hosts after
``parallel.initialize_distributed``); every host walks the same global batches, places only its own devices'
rows (``parallel.place_global``) and gathers the results (``parallel.to_host``), so each host evaluates its shard
of the points and all hosts hold the one global report.

Targeted modes: a spec with ``target`` (``jaxrobust.attacks.targets``) builds a ``TargetedAttack``; its step also
returns the targets it picked (``Points.adv_targets``), from which ``metrics.TargetedSuccess`` (a default metric)
reports the targeted success rate. Robust accuracy is unchanged: robust iff the prediction is still the true y.

Latent features: a metric that declares ``needs_features`` (R-DIV, ``latent_divergence.py``) makes the
loop also keep the penultimate features of the clean points and of the attacks' outputs (the same
x_adv as the accuracies), through the evaluator's ``features_apply`` (``models.make_features_apply``).
That is one extra forward pass per batch and attack, outside the attacks' programs: the attacks,
predictions and every other number are the same with or without it.

Perturbation norms: for a spec with ``eps_curve`` (a minimum-norm attack: FMN, DDN) the loop also keeps
||x_adv - x||_p per point (host-side, not timed), from which ``min_norm_curve.MinNormCurve`` (a default
metric) reports robust accuracy at every radius of the list from that one run.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import losses as losses_lib
from jaxrobust import parallel, threat
from jaxrobust.attacks.per_example import IndexedKey
from jaxrobust.attacks.registry import attack_info, attack_parameters, get_attack
from jaxrobust.evaluate import metrics as metrics_lib
from jaxrobust.evaluate.ensemble_metrics import EnsembleMembers
from jaxrobust.evaluate.min_norm_curve import MinNormCurve, per_point_distance
from jaxrobust.evaluate.specs import EVALUATOR_KEYS  # noqa: F401  (the spec keys the evaluator reads)
from jaxrobust.models.fast_gradients import fast_input_gradients
from jaxrobust.evaluate.specs import (attack_kwargs, attack_limits, check_specs, curve_norm, reported, spec_label,
                                     two_class_logits)
from jaxrobust.types import ApplyFn, ModelOutput

# Clean accuracy, robust accuracy (+ worst case); clean and robust AP for a single-logit model; robust accuracy
# against eps for the minimum-norm attack specs with eps_curve (nothing otherwise).
# The targeted success rate of the specs with ``target`` (nothing otherwise).
DEFAULT_METRICS = (metrics_lib.CleanAccuracy(), metrics_lib.RobustAccuracy(), metrics_lib.AveragePrecision(),
                   MinNormCurve(), metrics_lib.TargetedSuccess(), EnsembleMembers())


class RobustEvaluator:
  """Caches one jitted clean step and one jitted step per attack spec.

  trace_eps: eps is a traced argument of each attack's program, so an eps sweep compiles once. False
  compiles every eps into its own program as a constant, which XLA may fold, moving the last bits of
  an attack's iterates: the AdAP protocol's numbers (``APEvaluator``) were measured that way.
  features_apply: ``features_apply(variables, x) -> ModelOutput(logits, features)`` of the same model
  (``jaxrobust.models.make_features_apply(module)``), needed only by metrics that read latents (R-DIV).
  member_apply: for an ensemble, ``member_apply(variables, x) -> (M, B, K)`` its members' logits
  (``jaxrobust.models.make_member_apply(module)``): the points then carry every member's probabilities (at the
  clean points and at every attack's outputs; ``metrics`` ``EnsembleMembers``: A-i / A-Avg / A-All and the
  transferability table), a spec's ``member: i`` crafts on member i alone, and attacks on the members
  (``AttackInfo.model_output`` 'member_logits', e.g. TA-MOO on the ENS task set) get the members' logits.
  ``RobustEvaluator.for_module(module)`` builds all three applies from a jaxrobust model.
  """

  def __init__(self, apply: ApplyFn, *, mesh=None, trace_eps: bool = True, features_apply=None,
               member_apply=None):
    self.apply = apply
    self.features_apply = features_apply
    self.member_apply = member_apply
    self._members = None
    self._features = None
    self.trace_eps = bool(trace_eps)
    self.mesh = mesh if mesh is not None else parallel.make_mesh()
    repl, data = parallel.replicated(self.mesh), parallel.data_sharded(self.mesh)
    self._repl, self._data = repl, data
    self._clean = jax.jit(lambda v, x: apply(v, x), in_shardings=(repl, data), out_shardings=data)
    self._attacks: dict[Any, Callable] = {}
    self._bar = None  # the progress bar of the pass in flight (a cascade reports its stages on it)

  @classmethod
  def for_module(cls, module, *, features: bool = False, **kw) -> "RobustEvaluator":
    """The evaluator of a jaxrobust model: its inference apply, its features apply when ``features``, and its
    members' apply when it is an ensemble."""
    from jaxrobust.models import make_apply, make_features_apply, make_member_apply
    from jaxrobust.models.ensemble import is_ensemble
    return cls(make_apply(module), features_apply=make_features_apply(module) if features else None,
               member_apply=make_member_apply(module) if is_ensemble(module) else None, **kw)

  def _member_probs_step(self):
    """(variables, x) -> (M, B, K) members' softmax probabilities, jitted once."""
    if self._members is None:
      member_apply = self.member_apply
      self._members = jax.jit(lambda v, x: jax.nn.softmax(member_apply(v, x), axis=-1),
                              in_shardings=(self._repl, self._data))
    return self._members

  def _crafted_on(self, spec: dict, name: str):
    """The apply an attack crafts on, or None for the evaluated model itself: a surrogate (``source``), one
    member (``member``) or all members' logits (attacks declaring ``model_output='member_logits'``)."""
    member = spec.get("member")
    wants_members = getattr(attack_info(name), "model_output", "logits") == "member_logits"
    if member is None and not wants_members:
      return None if spec.get("source") is None else spec["source"][0]
    label = spec_label(spec)
    if self.member_apply is None:
      what = f"member {member}" if member is not None else "the ensemble's members"
      raise ValueError(f"attack {label!r} crafts on {what}, but this evaluator has no member apply: evaluate an "
                       "ensemble (get_model(..., members=M)) with RobustEvaluator.for_module(module), or pass "
                       "RobustEvaluator(apply, member_apply=...) returning (M, B, K) logits")
    if spec.get("source") is not None:
      raise ValueError(f"attack {label!r}: 'source' (a surrogate) and crafting on the members exclude each other")
    member_apply = self.member_apply
    if member is None:
      return member_apply
    if isinstance(member, bool) or not isinstance(member, int) or member < 0:
      raise ValueError(f"attack {label!r}: member must be a member index >= 0; got {member!r}")

    def one_member(v, x):
      z = member_apply(v, x)
      if member >= z.shape[0]:  # static: indexing past the end would silently clamp to the last member
        raise ValueError(f"attack {label!r}: member {member} does not exist; the ensemble has {z.shape[0]} members "
                         f"(0 .. {z.shape[0] - 1})")
      return z[member]
    return one_member

  def _attack_step(self, spec: dict):
    """step(variables, x, y, key, index, eps, source_variables) -> (logits at x_adv, x_adv), cached per spec
    (index: the (B,) global ids of the points, folded into key); a spec with ``target`` (``attacks.targets``) ->
    (logits at x_adv, x_adv, targets)."""
    kwargs = attack_kwargs(spec)
    targeted = kwargs.get("target") is not None
    eps = kwargs.pop("eps", None)
    has_eps = eps is not None
    eps_constant = None if self.trace_eps or eps is None else float(eps)
    two_class = bool(spec.get("two_class_logits", False))
    own_source = spec.get("source") is None
    source_apply = self._crafted_on(spec, spec["name"])
    step_size_ratio = spec.get("step_size_ratio")
    cache_key = (spec["name"], has_eps, eps_constant, two_class, id(spec["source"][0]) if not own_source else None,
                 spec.get("member"), source_apply is not None, repr(step_size_ratio),
                 tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    if cache_key in self._attacks:
      return self._attacks[cache_key]
    apply, name = self.apply, spec["name"]
    info = attack_info(name)
    takes_mesh = any("mesh" in inspect.signature(f).parameters for f in info.forwards_to)
    crafted_on = apply if source_apply is None else source_apply
    if two_class:
      single_logit = crafted_on
      crafted_on = lambda v, x: two_class_logits(single_logit(v, x))  # noqa: E731

    def build(eps_value, **extra):
      kw = dict(kwargs, **extra)
      if eps_constant is not None:
        eps_value = eps_constant
      if step_size_ratio is not None:  # step size proportional to a (possibly traced) eps
        kw["step_size"] = step_size_ratio * eps_value
      if takes_mesh:  # a host-side cascade spreads its work over the evaluator's devices
        kw["mesh"] = self.mesh
      return get_attack(name, eps=eps_value, **kw) if has_eps else get_attack(name, **kw)

    # Any model's convolutions get the fast input gradients on CPU (the library's own already have them).
    crafted_fast = fast_input_gradients(crafted_on)

    def logits_fn(v, src):
      # A Partial (not a lambda): one stable function object keeps compiled inner programs cached.
      return jax.tree_util.Partial(crafted_fast, v if own_source else src)

    def attacked(attack, v, x, y, key, src):
      if targeted:  # a TargetedAttack (registry.get_attack with target): also its targets
        return attack.run(logits_fn(v, src), x, y, key)
      return attack(logits_fn(v, src), x, y, key), None

    if info.jittable and not info.compacts:
      def run(v, x, y, key, index, eps_value, src):
        x_adv, t = attacked(build(eps_value), v, x, y, IndexedKey(key, index), src)
        return (apply(v, x_adv), x_adv) + ((t,) if targeted else ())
      fn = jax.jit(run, in_shardings=(self._repl, self._data, self._data, self._repl, self._data, self._repl,
                                      self._repl),
                   out_shardings=(self._data,) * (3 if targeted else 2))
    else:  # a cascade with host-side control (e.g. AutoAttack): its stages are jitted inside
      reports_stages = "on_stage_end" in attack_parameters(name) and "on_stage_end" not in kwargs

      def fn(v, x, y, key, index, eps_value, src):
        bar = self._bar
        extra = {"on_stage_end": lambda st: bar.set_postfix_str(stage_text(st))} if reports_stages and bar else {}
        x_adv, t = attacked(build(float(eps_value), **extra), v, x, y, IndexedKey(key, index), src)
        x_adv = parallel.place_global(parallel.to_host(x_adv), self.mesh)
        return (self._clean(v, x_adv), x_adv) + ((t,) if targeted else ())
    self._attacks[cache_key] = fn
    return fn

  def _features_step(self):
    """features(variables, x) -> (B, D) latents, jitted once."""
    if self._features is None:
      if self.features_apply is None:
        raise ValueError("this evaluation needs latent features (a metric declares needs_features, e.g. R-DIV) "
                         "but the evaluator has no features apply: build it as RobustEvaluator(apply, "
                         "features_apply=jaxrobust.models.make_features_apply(module)), or, for your own model, "
                         "pass a features_apply(variables, x) -> jaxrobust.types.ModelOutput(logits, features)")
      features_apply = self.features_apply

      def latents(v, x):
        out = features_apply(v, x)
        if not isinstance(out, ModelOutput):
          raise TypeError(f"features_apply returned {type(out).__name__} (shape {getattr(out, 'shape', '?')}), not "
                          "ModelOutput(logits, features): it looks like a logits-only apply (make_apply). Use "
                          "jaxrobust.models.make_features_apply(module), or return "
                          "jaxrobust.types.ModelOutput(logits, features) from your function")
        return out.features.reshape(out.features.shape[0], -1)
      self._features = jax.jit(latents, in_shardings=(self._repl, self._data), out_shardings=self._data)
    return self._features

  def points(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256, key=None,
             max_examples: int | None = None, progress: bool = True,
             keep_adversarials: bool = False, features: bool | Sequence[str] = False) -> metrics_lib.Points:
    """One pass over ``dataset`` (its first ``max_examples`` points): per-point clean and adversarial
    predictions (and scores of a single-logit model), timings, the first batch, and the adversarial
    examples when ``keep_adversarials``.

    features: True keeps the latents (``features_apply``) of the clean points and of every attack's
    outputs in ``Points.clean_features`` / ``adv_features``; a sequence of labels keeps those attacks'
    only (and the clean ones). Not counted in ``seconds``.
    """
    from jaxrobust.data import batch_iterator
    labels = check_specs(attacks)  # the specs first: they need no model call
    steps = [self._attack_step(s) for s in attacks]
    check_inputs(self.apply, variables, dataset, batch_size, max_examples)
    if max_examples is not None:
      dataset = dataset.take(int(max_examples))
    n_dev = self.mesh.devices.size
    batch_size = max(n_dev, (int(batch_size) // n_dev) * n_dev)
    key = jax.random.PRNGKey(0) if key is None else key
    limits = attack_limits(dataset, attacks, labels)
    if features is True or features is False:
      feature_labels = set(labels) if features else set()
    else:
      feature_labels = set(features)
      unknown = sorted(feature_labels - set(labels))
      if unknown:
        raise ValueError(f"latent features asked for attacks {unknown}, which are not in this evaluation "
                         f"(its attack labels: {labels})")
    keep_features = features is not False
    features_at = self._features_step() if keep_features else None
    variables = parallel.replicate(variables, self.mesh)
    curve_norms = {l: curve_norm(s) for s, l in zip(attacks, labels) if "eps_curve" in s}
    adv_norms = {l: [] for l in curve_norms}
    sources = [parallel.replicate(() if s.get("source") is None else s["source"][1], self.mesh) for s in attacks]
    out = {"labels": [], "clean_pred": [], "clean_score": [], "clean_features": [], "clean_member_probs": []}
    member_probs_at = self._member_probs_step() if self.member_apply is not None else None
    adv_member_probs = {l: [] for l in labels} if member_probs_at is not None else None
    adv_features = {l: [] for l in labels if l in feature_labels}
    adv_pred = {l: [] for l in labels}
    adv_targets = {l: [] for s, l in zip(attacks, labels) if attack_kwargs(s).get("target") is not None}
    adv_score = {l: [] for l in labels}
    adversarials = {l: [] for l in labels}
    seconds = {l: 0.0 for l in labels}
    seconds["clean"] = 0.0
    hits = {"clean": 0, **{l: 0 for l in labels}}  # running counts for the progress bar
    seen = {l: 0 for l in labels}
    it = batch_iterator(dataset, batch_size, seed=0, epoch=0, shuffle=False, drop_remainder=False,
                        pad_last=True, process_index=0, process_count=1)
    bar = None
    if progress and parallel.is_main_process():  # one tick per point and stage: the clean pass, then every attack
      from tqdm.auto import tqdm
      total = len(dataset) + sum(min(limits.get(l, len(dataset)), len(dataset)) for l in labels)
      bar = tqdm(total=total, desc="evaluate clean", unit="point", dynamic_ncols=True)
    self._bar = bar
    n, sample = 0, None
    for batch in it:
      mask = np.asarray(batch["mask"]) > 0
      y_host = np.asarray(batch["label"])
      if sample is None:
        sample = (batch["image"][mask], batch["label"][mask])
      # Every host holds the whole global batch and places its own devices' rows.
      x, y, index = parallel.place_global((batch["image"], y_host.astype(np.int32), batch["index"]), self.mesh)
      t0 = time.perf_counter()
      clean_logits = parallel.to_host(self._clean(variables, x))
      seconds["clean"] += time.perf_counter() - t0
      single_logit = clean_logits.ndim == 1 or clean_logits.shape[-1] == 1
      pred = np.asarray(losses_lib.predict(clean_logits))
      out["labels"].append(y_host[mask])
      out["clean_pred"].append(pred[mask])
      if single_logit:
        out["clean_score"].append(clean_logits.reshape(len(mask))[mask])
      hits["clean"] += int((pred == y_host)[mask].sum())
      if bar is not None:
        bar.update(int(mask.sum()))
      if keep_features:
        out["clean_features"].append(parallel.to_host(features_at(variables, x))[mask])
      if member_probs_at is not None:
        out["clean_member_probs"].append(parallel.to_host(member_probs_at(variables, x))[:, mask])
      for a, (label, step, src) in enumerate(zip(labels, steps, sources)):
        keep = mask & (n + np.cumsum(mask) - 1 < limits.get(label, n + len(mask)))  # rows inside the limit
        if not keep.any():
          continue
        eps = jnp.asarray(float(attacks[a].get("eps", 0.0)), jnp.float32)
        if bar is not None:
          bar.set_description(f"evaluate {label}")
        t0 = time.perf_counter()
        adv_logits, x_adv_on_mesh, *targets = step(variables, x, y, jax.random.fold_in(key, a), index, eps, src)
        adv_logits, x_adv, targets = parallel.to_host((adv_logits, x_adv_on_mesh, targets))
        p = np.asarray(losses_lib.predict(adv_logits))
        if single_logit:
          adv_score[label].append(adv_logits.reshape(len(mask))[keep])
        seconds[label] += time.perf_counter() - t0
        adv_pred[label].append(p[keep])
        if targets:
          adv_targets[label].append(targets[0][keep])
        hits[label] += int(((pred == y_host) & (p == y_host))[keep].sum())
        seen[label] += int(keep.sum())
        if keep_adversarials:
          adversarials[label].append(x_adv[keep])
        if label in adv_norms:
          adv_norms[label].append(per_point_distance(x_adv[keep], np.asarray(batch["image"])[keep],
                                                     curve_norms[label]))
        if label in adv_features:
          adv_features[label].append(parallel.to_host(features_at(variables, x_adv_on_mesh))[keep])
        if adv_member_probs is not None:
          adv_member_probs[label].append(parallel.to_host(member_probs_at(variables, x_adv_on_mesh))[:, keep])
        if bar is not None:
          bar.update(int(keep.sum()))
          bar.set_postfix(progress_postfix(hits, seen, labels, n + int(mask.sum())), refresh=False)
      n += int(mask.sum())
    if bar is not None:
      bar.close()
    self._bar = None
    single = bool(out["clean_score"])
    return metrics_lib.Points(
        labels=_join(out["labels"], np.int32), clean_pred=_join(out["clean_pred"], np.int32),
        clean_score=_join(out["clean_score"], np.float32) if single else None,
        adv_pred={l: _join(v, np.int32) for l, v in adv_pred.items()},
        adv_score={l: _join(v, np.float32) for l, v in adv_score.items()} if single else None,
        attacks=[reported(s, l) for s, l in zip(attacks, labels)], seconds=seconds,
        adversarials={l: np.concatenate(v) for l, v in adversarials.items()} if keep_adversarials else None,
        sample=sample,
        clean_features=np.concatenate(out["clean_features"]) if keep_features and out["clean_features"] else None,
        adv_features={l: np.concatenate(v) if v else None for l, v in adv_features.items()}
        if keep_features else None,
        adv_norms={l: _join(v, np.float64) for l, v in adv_norms.items()} if adv_norms else None,
        adv_targets={l: _join(v, np.int32) for l, v in adv_targets.items()} if adv_targets else None,
        clean_member_probs=np.concatenate(out["clean_member_probs"], axis=1) if member_probs_at is not None else None,
        adv_member_probs={l: np.concatenate(v, axis=1) if v else None for l, v in adv_member_probs.items()}
        if adv_member_probs is not None else None)

  def evaluate(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256,
               key=None, max_examples: int | None = None, progress: bool = True,
               keep_adversarials: bool = False, checks: bool = False,
               metrics: Sequence[metrics_lib.Metric] | None = None) -> dict:
    """Returns {'n', 'clean_acc', 'robust_acc': {label: acc}, 'worst_case_acc', 'seconds': {...}}.

    A spec with ``target`` (a targeted mode, ``jaxrobust.attacks.targets``) keeps the usual robust accuracy
    (a point is robust iff still predicted as its true label y, whatever class the attack reached) and adds
    'targeted_success': {label: rate of prediction == target} (``metrics.TargetedSuccess``).

    A spec's own ``max_examples`` runs that attack on the first m points only (e.g. AutoAttack on the
    first 1000 test images, as MAIL's and UDR's code do): its accuracy is over those m points,
    ``n_attacked[label]`` says how many, and the worst case is over the points every attack saw
    (``n_worst``). ``check_prefix_classes`` refuses a prefix that misses classes (class-sorted files).
    A single-logit model also gets 'clean_ap' and 'robust_ap': {label: AP}.

    metrics: the plug-ins computing the report (default ``DEFAULT_METRICS``). One that declares
    ``needs_features`` (``LatentDivergence``: 'r_div') needs the evaluator's ``features_apply``.
    checks=True adds 'checks': the gradient-masking checks of ``jaxrobust.evaluate.checks`` on
    the first batch and across the attacks' results (flagged ones are also printed).
    keep_adversarials=True adds 'adversarials', 'robust_flags' and 'clean_flags' (per point).
    """
    metrics = DEFAULT_METRICS if metrics is None else metrics
    points = self.points(variables, dataset, attacks, batch_size=batch_size, key=key, max_examples=max_examples,
                         progress=progress, keep_adversarials=keep_adversarials,
                         features=_features_asked(metrics))
    report = {"n": points.n,
              **metrics_lib.compute(points, metrics),
              "seconds": points.seconds, "attacks": points.attacks}
    if checks and points.sample is not None:
      from jaxrobust.evaluate.checks import run_checks
      x0, y0 = points.sample
      specs = [dict(s, label=r["label"]) for s, r in zip(attacks, points.attacks)]  # with any surrogate
      # Several processes: every process checks the same sample on its own devices.
      placed = parallel.replicate(variables, self.mesh) if jax.process_count() == 1 else parallel.to_host(variables)
      report["checks"] = run_checks(self.apply, placed, jnp.asarray(x0),
                                    jnp.asarray(y0), report.get("robust_acc"), specs)
      for c in report["checks"]:
        if c["flagged"]:
          print(f"WARNING [{c['name']}]: {c['message']}")
    if keep_adversarials:
      report["adversarials"] = points.adversarials
      report["robust_flags"] = metrics_lib.robust_flags(points)
      report["clean_flags"] = metrics_lib.clean_correct(points)
    return report


def check_inputs(apply: ApplyFn, variables, dataset, batch_size, max_examples) -> None:
  """Refuses, before any work, what would make a report silently wrong: max_examples or batch_size below 1,
  an empty split, NaN / Inf or out-of-range float pixels, and labels or a class count that do not match the
  model's output size (K logits, or 2 classes for a single-logit head; read with ``jax.eval_shape``)."""
  for name, value in (("max_examples", max_examples), ("batch_size", batch_size)):
    if value is None and name == "max_examples":
      continue
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      hint = "; pass None to evaluate every point" if name == "max_examples" else ""
      raise ValueError(f"evaluate: {name} must be an integer >= 1{hint}; got {value!r}")
  if len(dataset) == 0:
    raise ValueError(f"evaluate: the dataset {getattr(dataset, 'name', '')!r} is empty; there is nothing to evaluate")
  images = np.asarray(dataset.images)
  if np.issubdtype(images.dtype, np.floating):
    threat.check_pixel_values(images, f"evaluate: dataset {getattr(dataset, 'name', '')!r} images")
  probe = jax.ShapeDtypeStruct((1,) + images.shape[1:], jnp.float32)
  out = jax.eval_shape(apply, variables, probe)
  logits = out.logits if isinstance(out, ModelOutput) else out
  k = 2 if logits.ndim == 1 or logits.shape[-1] == 1 else int(logits.shape[-1])
  n_classes = getattr(dataset, "num_classes", None)
  if n_classes is not None and int(n_classes) != k:
    raise ValueError(f"evaluate: the dataset {getattr(dataset, 'name', '')!r} has {n_classes} classes but the model "
                     f"outputs {k} (logits of shape {tuple(logits.shape)}): evaluate a model built for this dataset "
                     f"(get_model(..., num_classes={n_classes}))")
  labels = np.asarray(dataset.labels)
  if labels.size and (labels.min() < 0 or labels.max() >= k):
    raise ValueError(f"evaluate: labels must lie in [0, {k}) for a model with {k} classes; got labels in "
                     f"[{labels.min()}, {labels.max()}]")


def _features_asked(metrics) -> bool | tuple[str, ...]:
  """What the metrics' declared ``needs_features`` / ``feature_attacks`` ask ``points`` to keep."""
  asking = [m for m in metrics if getattr(m, "needs_features", False)]
  if not asking:
    return False
  if any(getattr(m, "feature_attacks", None) is None for m in asking):
    return True
  return tuple(dict.fromkeys(l for m in asking for l in m.feature_attacks))


def _join(parts: list, dtype) -> np.ndarray:
  return np.concatenate(parts) if parts else np.zeros((0,), dtype)


def progress_postfix(hits: dict, seen: dict, labels, n: int) -> dict:
  """The bar's running accuracies, full labels: {'clean': '0.912', 'PGD-20 eps=0.031': '0.473', ...}."""
  return {"clean": f"{hits['clean'] / max(n, 1):.3f}",
          **{l: f"{hits[l] / seen[l]:.3f}" for l in labels if seen[l]}}


def stage_text(state) -> str:
  """AutoAttack's place in its cascade for the progress bar (an ``AutoAttackState`` after a stage):
  'apgd-ce done 1/4, 46/100 still robust, next apgd-t'."""
  done, stages = int(state.stage), list(state.attacks)
  robust = np.asarray(state.robust)
  text = f"{stages[done - 1]} done {done}/{len(stages)}, {int(robust.sum())}/{robust.size} still robust"
  return text + (f", next {stages[done]}" if done < len(stages) else "")


def evaluate(apply: ApplyFn, variables, dataset, attacks: Sequence[dict] = (), **kw) -> dict:
  """One-shot form of ``RobustEvaluator(apply).evaluate(variables, dataset, attacks, ...)``."""
  mesh, features_apply = kw.pop("mesh", None), kw.pop("features_apply", None)
  return RobustEvaluator(apply, mesh=mesh, features_apply=features_apply).evaluate(variables, dataset, attacks, **kw)


def robust_accuracy_curve(evaluator: RobustEvaluator, variables, dataset, spec: dict,
                          eps_grid: Sequence[float], **kw) -> dict:
  """Robust accuracy of one attack over an eps grid (one compiled program for all eps).

  A spec with ``step_size_ratio`` uses step_size = ratio * eps at each grid point. Returns {'eps', 'robust_acc',
  'labels': each point's attack label, with its own eps (``eps_label``), 'reports': each point's full report
  (the table of one eps and its curve point are then the same evaluation), 'attack': spec}.
  """
  accs, labels, reports = [], [], []
  for eps in eps_grid:
    label = eps_label(spec, eps)
    r = evaluator.evaluate(variables, dataset, [dict(spec, eps=float(eps), label=label)], **kw)
    accs.append(r["robust_acc"][label])
    labels.append(label)
    reports.append(r)
  return {"eps": [float(e) for e in eps_grid], "robust_acc": accs, "labels": labels, "reports": reports,
          "attack": spec}


def eps_label(spec: dict, eps: float) -> str:
  """The spec's label with its radius set to ``eps``: 'PGD-20 eps=0.2' -> 'PGD-20 eps=0.05'; a label without
  'eps=' (or no label: the attack's name) gets ' eps=...' appended."""
  import re
  label = str(spec.get("label") or spec["name"])
  if re.search(r"eps=\S+", label):
    return re.sub(r"eps=\S+", f"eps={float(eps):g}", label, count=1)
  return f"{label} eps={float(eps):g}"


def format_table(rows: dict[str, dict], attack_labels: Sequence[str] | None = None) -> str:
  """Markdown table: one row per model, columns clean, each attack, worst case."""
  if not rows:
    return ""
  first = next(iter(rows.values()))
  attack_labels = list(attack_labels or first["robust_acc"].keys())
  header = ["model", "clean"] + attack_labels + (["worst case"] if len(attack_labels) > 1 else [])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for name, r in rows.items():
    cells = [name, f"{100 * r['clean_acc']:.2f}"] + [f"{100 * r['robust_acc'][l]:.2f}" for l in attack_labels]
    if len(attack_labels) > 1:
      cells.append(f"{100 * r['worst_case_acc']:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
  ap_rows = {name: r for name, r in rows.items() if "clean_ap" in r}
  if ap_rows:  # single-logit models: average precision next to accuracy
    lines += ["", "| model | clean AP | " + " | ".join(f"{l} AP" for l in attack_labels) + " |",
              "|" + "---|" * (2 + len(attack_labels))]
    for name, r in ap_rows.items():
      lines.append(f"| {name} | {r['clean_ap']:.4f} | " +
                   " | ".join(f"{r['robust_ap'][l]:.4f}" for l in attack_labels) + " |")
  return "\n".join(lines)


def evaluate_from_config(apply, variables, dataset, cfg: dict, *, progress=True, mesh=None, member_apply=None) -> dict:
  """The report of ``cfg['eval']``: its attacks, batch size, max_examples and checks, key seed + 1
  (``member_apply``: an ensemble's members, see ``RobustEvaluator``)."""
  e = cfg["eval"]
  evaluator = RobustEvaluator(apply, mesh=mesh, member_apply=member_apply)
  report = evaluator.evaluate(variables, dataset, list(e.get("attacks", [])),
                              batch_size=int(e.get("batch_size", 256)), max_examples=e.get("max_examples"),
                              progress=progress, key=jax.random.PRNGKey(int(cfg.get("seed", 0)) + 1),
                              checks=bool(e.get("checks", False)))
  return report
