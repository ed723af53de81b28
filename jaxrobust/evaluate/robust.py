"""Clean and robust accuracy over a whole split, batched, sharded, with attacks as plug-ins.

An attack spec is a dict ``{'name': registry name, 'label': shown name, **config}`` (e.g.
``{'name': 'pgd', 'eps': 0.3, 'steps': 20, 'step_size': 0.01}``). Each distinct spec compiles
once: eps is a traced argument, so an eps sweep reuses one program. The last batch is padded
and masked, never dropped, so every test point counts. A point is robust to an attack iff it
is correctly classified both clean and at the attack's output; the worst case is robust iff
robust to every attack.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import losses as losses_lib
from jaxrobust import parallel
from jaxrobust.attacks.registry import attack_info, get_attack
from jaxrobust.types import ApplyFn


def _spec_label(spec: dict) -> str:
  if "label" in spec:
    return str(spec["label"])
  parts = [spec["name"]] + [f"{k}={v}" for k, v in sorted(spec.items()) if k not in ("name", "label")]
  return " ".join(parts)


# Spec keys the evaluator reads itself; the rest configure the attack.
EVALUATOR_KEYS = ("name", "label", "max_examples")


def _attack_kwargs(spec: dict) -> dict:
  return {k: v for k, v in spec.items() if k not in EVALUATOR_KEYS}


class RobustEvaluator:
  """Caches one jitted clean step and one jitted step per attack spec (eps traced)."""

  def __init__(self, apply: ApplyFn, *, mesh=None):
    self.apply = apply
    self.mesh = mesh if mesh is not None else parallel.make_mesh()
    repl, data = parallel.replicated(self.mesh), parallel.data_sharded(self.mesh)
    self._repl, self._data = repl, data
    self._clean = jax.jit(lambda v, x: apply(v, x), in_shardings=(repl, data), out_shardings=data)
    self._attacks: dict[Any, Callable] = {}

  def _attack_step(self, spec: dict):
    kwargs = _attack_kwargs(spec)
    has_eps = kwargs.pop("eps", None) is not None
    cache_key = (spec["name"], has_eps, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    if cache_key in self._attacks:
      return self._attacks[cache_key]
    apply, name = self.apply, spec["name"]

    def build(eps_value):
      kw = dict(kwargs)
      if "step_size_ratio" in kw:  # step size proportional to a (possibly traced) eps
        kw["step_size"] = kw.pop("step_size_ratio") * eps_value
      return get_attack(name, eps=eps_value, **kw) if has_eps else get_attack(name, **kw)

    if attack_info(name).jittable:
      def run(v, x, y, key, eps_value):
        x_adv = build(eps_value)(lambda xx: apply(v, xx), x, y, key)
        return apply(v, x_adv), x_adv
      fn = jax.jit(run, in_shardings=(self._repl, self._data, self._data, self._repl, self._repl),
                   out_shardings=(self._data, self._data))
    else:  # a cascade with host-side control (e.g. AutoAttack): its stages are jitted inside
      logits_at = jax.jit(apply)

      def fn(v, x, y, key, eps_value):
        # A Partial (not a lambda) keeps the cascade's compiled stages cached across batches.
        x_adv = build(float(eps_value))(jax.tree_util.Partial(apply, v), x, y, key)
        return logits_at(v, x_adv), x_adv
    self._attacks[cache_key] = fn
    return fn

  def evaluate(self, variables, dataset, attacks: Sequence[dict] = (), *, batch_size: int = 256,
               key=None, max_examples: int | None = None, progress: bool = True,
               keep_adversarials: bool = False, checks: bool = False) -> dict:
    """Returns {'n', 'clean_acc', 'robust_acc': {label: acc}, 'worst_case_acc', 'seconds': {...}}.

    A spec's own ``max_examples`` runs that attack on the first m points only (e.g. AutoAttack on the
    first 1000 test images, as MAIL's and UDR's code do): its accuracy is over those m points,
    ``n_attacked[label]`` says how many, and the worst case is over the points every attack saw
    (``n_worst``). ``check_prefix_classes`` refuses a prefix that misses classes (class-sorted files).

    checks=True adds 'checks': the gradient-masking checks of ``jaxrobust.evaluate.checks`` on
    the first batch and across the attacks' results (flagged ones are also printed).
    """
    from jaxrobust.data import batch_iterator
    if max_examples:
      dataset = dataset.take(int(max_examples))
    n_dev = self.mesh.devices.size
    batch_size = max(n_dev, (int(batch_size) // n_dev) * n_dev)
    key = jax.random.PRNGKey(0) if key is None else key
    variables = parallel.replicate(variables, self.mesh)
    from jaxrobust import threat
    for s in attacks:  # eps is traced inside the compiled attack, so check it here on the host
      if "name" not in s:
        raise ValueError(f"attack spec {s} needs a 'name' (one of jaxrobust.attacks.attack_names())")
      threat.check_eps(s.get("eps", 0.0), name=f"eps of attack {_spec_label(s)!r}")
    labels = [_spec_label(s) for s in attacks]
    if len(set(labels)) != len(labels):
      raise ValueError(f"attack labels must be unique; got {labels}")
    limits = {}
    for label, s in zip(labels, attacks):
      m = s.get("max_examples")
      if m is not None:
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
          raise ValueError(f"max_examples of attack {label!r} must be a positive int; got {m!r}")
        if m < len(dataset):
          from jaxrobust.data.dataset import check_prefix_classes
          check_prefix_classes(dataset, m, f"max_examples={m} of attack {label!r}")
          limits[label] = m
    steps = [self._attack_step(s) for s in attacks]
    n = 0
    clean_correct, clean_scores = [], []
    robust = {l: [] for l in labels}
    adv_scores = {l: [] for l in labels}  # single-logit models: scores for robust AP
    seconds = {l: 0.0 for l in labels}
    seconds["clean"] = 0.0
    adversarials = {l: [] for l in labels} if keep_adversarials else None
    it = batch_iterator(dataset, batch_size, seed=0, epoch=0, shuffle=False, drop_remainder=False,
                        pad_last=True, process_index=0, process_count=1)
    total = -(-len(dataset) // batch_size)
    bar = None
    if progress:
      from tqdm.auto import tqdm
      bar = tqdm(total=total, desc="evaluate", unit="batch", dynamic_ncols=True)
    first_batch = None
    for b, batch in enumerate(it):
      mask = np.asarray(batch["mask"]) > 0
      if first_batch is None:
        first_batch = (batch["image"][mask], batch["label"][mask])
      x = jax.device_put(batch["image"], self._data)
      y = jax.device_put(batch["label"], self._data)
      t0 = time.perf_counter()
      clean_logits = np.asarray(self._clean(variables, x))
      seconds["clean"] += time.perf_counter() - t0
      single_logit = clean_logits.ndim == 1 or clean_logits.shape[-1] == 1
      pred = np.asarray(losses_lib.predict(clean_logits))
      correct = pred == np.asarray(batch["label"])
      clean_correct.append(correct[mask])
      if single_logit:
        clean_scores.append(clean_logits.reshape(len(mask))[mask])
      for label, spec, step in zip(labels, attacks, steps):
        keep = mask & (n + np.cumsum(mask) - 1 < limits.get(label, n + len(mask)))  # rows inside the limit
        if not keep.any():
          continue
        k = jax.random.fold_in(jax.random.fold_in(key, b), labels.index(label))
        eps = jnp.asarray(float(spec.get("eps", 0.0)), jnp.float32)
        t0 = time.perf_counter()
        adv_logits, x_adv = step(variables, x, y, k, eps)
        adv_logits = np.asarray(adv_logits)
        adv_pred = np.asarray(losses_lib.predict(adv_logits))
        if single_logit:
          adv_scores[label].append(adv_logits.reshape(len(mask))[keep])
        seconds[label] += time.perf_counter() - t0
        robust[label].append((correct & (adv_pred == np.asarray(batch["label"])))[keep])
        if keep_adversarials:
          adversarials[label].append(np.asarray(x_adv)[keep])
      n += int(mask.sum())
      if bar is not None:
        bar.update(1)
        if labels:
          bar.set_postfix(clean=f"{np.concatenate(clean_correct).mean():.3f}",
                          **{_short(l): f"{np.concatenate(robust[l]).mean():.3f}" for l in labels[:3]})
    if bar is not None:
      bar.close()
    clean = np.concatenate(clean_correct)
    flags = {l: np.concatenate(robust[l]) if robust[l] else np.zeros((0,), bool) for l in labels}
    n_worst = min([n] + [len(f) for f in flags.values()])
    worst = clean[:n_worst].copy()
    for l in labels:
      worst &= flags[l][:n_worst]
    report = {"n": n, "clean_acc": float(clean.mean()),
              "robust_acc": {l: float(flags[l].mean()) for l in labels},
              "worst_case_acc": float(worst.mean()), "n_worst": n_worst,
              "n_attacked": {l: int(len(flags[l])) for l in labels}, "seconds": seconds,
              "attacks": [dict(s, label=l) for s, l in zip(attacks, labels)]}
    if clean_scores:  # single-logit (binary) model: AP of clean and adversarial scores, all points
      from jaxrobust.evaluate.average_precision import average_precision
      y_all = np.asarray(dataset.labels[:n])
      report["clean_ap"] = average_precision(y_all, np.concatenate(clean_scores))
      report["robust_ap"] = {l: average_precision(y_all[:len(flags[l])], np.concatenate(adv_scores[l]))
                             for l in labels}
    if checks and first_batch is not None:
      from jaxrobust.evaluate.checks import run_checks
      x0, y0 = first_batch
      report["checks"] = run_checks(self.apply, variables, jnp.asarray(x0), jnp.asarray(y0),
                                    report["robust_acc"], report["attacks"])
      for c in report["checks"]:
        if c["flagged"]:
          print(f"WARNING [{c['name']}]: {c['message']}")
    if keep_adversarials:
      report["adversarials"] = {l: np.concatenate(v) for l, v in adversarials.items()}
      report["robust_flags"] = flags
      report["clean_flags"] = clean
    return report


def _short(label: str) -> str:
  return label.replace(" ", "_")[:12]


def evaluate(apply: ApplyFn, variables, dataset, attacks: Sequence[dict] = (), **kw) -> dict:
  """One-shot form of ``RobustEvaluator(apply).evaluate(variables, dataset, attacks, ...)``."""
  mesh = kw.pop("mesh", None)
  return RobustEvaluator(apply, mesh=mesh).evaluate(variables, dataset, attacks, **kw)


def robust_accuracy_curve(evaluator: RobustEvaluator, variables, dataset, spec: dict,
                          eps_grid: Sequence[float], **kw) -> dict:
  """Robust accuracy of one attack over an eps grid (one compiled program for all eps).

  A spec with ``step_size_ratio`` uses step_size = ratio * eps at each grid point.
  """
  accs = []
  for eps in eps_grid:
    s = dict(spec, eps=float(eps), label="curve")
    r = evaluator.evaluate(variables, dataset, [s], **kw)
    accs.append(r["robust_acc"]["curve"])
  return {"eps": [float(e) for e in eps_grid], "robust_acc": accs, "attack": spec}


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


def evaluate_from_config(apply, variables, dataset, cfg: dict, *, progress=True, mesh=None) -> dict:
  e = cfg["eval"]
  evaluator = RobustEvaluator(apply, mesh=mesh)
  report = evaluator.evaluate(variables, dataset, list(e.get("attacks", [])),
                              batch_size=int(e.get("batch_size", 256)), max_examples=e.get("max_examples"),
                              progress=progress, key=jax.random.PRNGKey(int(cfg.get("seed", 0)) + 1),
                              checks=bool(e.get("checks", False)))
  return report
