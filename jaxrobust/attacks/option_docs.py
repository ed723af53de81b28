"""What each attack option means, for ``jaxrobust list --attack NAME`` and ``attack_option_docs``.

An option's meaning is read from the docstrings of the attack function and its factory, where the option is
written ``name: meaning`` (also ``a, b: meaning`` and ``a / b: meaning``, anywhere in a line). Options that many
attacks share with one meaning (eps, steps, loss, ...) are declared once here, in ``SHARED``; an attack's own
docstring wins over it. ``ATTACK_SPECIFIC`` holds options whose docstring states them only in prose or under a
name another attack uses differently (FAB's beta is not EAD's); it wins over both.
"""

from __future__ import annotations

import inspect
import re

SHARED: dict[str, str] = {
    "eps": "perturbation budget: the radius of the norm ball (scalar or (B,) per example)",
    "step_size": "step per iteration (scalar or (B,)); None: the attack's default fraction of eps",
    "steps": "number of iterations (static)",
    "n_iter": "number of iterations per run (static)",
    "norm": "threat model: 'linf', 'l2' or 'l1' (those the attack supports)",
    "loss": "attack loss: a name in jaxrobust.losses.ATTACK_LOSSES ('ce', 'cw', 'dlr', 'kl', ...) or "
            "loss(logits, y, ref_logits) -> (B,)",
    "targeted": "y holds target classes and the attack moves towards them (see also target)",
    "target": "pick targets from the clean logits: 'random', 'least_likely', 'most_likely_wrong' or "
              "fn(logits, y) -> targets; implies targeted=True",
    "init": "start point: 'uniform' (random in the ball), 'normal' (x + small Gaussian) or 'none' (x itself)",
    "init_scale": "standard deviation of the 'normal' start",
    "unroll": "lax.fori_loop unroll factor (True: full); speed only, never the result",
    "randomized": "the model is randomised: logits_fn(x, keys) takes per-example keys, fresh draws every step",
    "eot_iter": "Expectation over Transformation: gradient averaged over this many draws per step (static)",
    "n_restarts": "independent random restarts; per point the first / best successful one is kept",
    "restarts": "independent random restarts; per point the restart selected by restart_select is kept",
    "rho": "APGD's step-size halving threshold: the fraction of improving steps required since the last "
           "checkpoint (Croce & Hein 2020)",
    "n_target_classes": "number of target classes, the 2nd..(n+1)-th largest clean logits, one full run each",
    "kappa": "confidence margin of the CW loss max(z_y - max_{j != y} z_j + kappa, 0)",
    "binary_search_steps": "rounds of the binary search over the loss trade-off constant c",
    "abort_early": "stop a search round when the loss stalls: 'example', 'batch' or False",
    "lr": "learning rate of the attack's inner optimiser",
    "decay": "momentum decay mu of the accumulated (normalised) gradient (0: no momentum)",
    "grad_norm": "normalisation of the gradient before accumulation: 'l1' (the paper) or 'mean' (torchattacks)",
    "early_stop": "freeze a point as soon as it is misclassified (reaches its target)",
    "restart_select": "'loss' keeps the restart with the largest final loss; 'fooled' prefers a fooling restart",
    "verify": "re-check the returned points with one more forward pass (x where not adversarial)",
    "transforms": "the EoT transformations: names or letters of jaxrobust.attacks.transforms.ALL ('all': seven)",
    "setting": "'stochastic' (transformation parameter p ~ U(0, 1), fresh per example and step) or "
               "'deterministic' (p = 1)",
    "weighting": "how the task gradients are combined: 'tamoo', 'mgda', 'minmax', 'uniform', 'pcgrad', "
                 "'cagrad' or 'hvm'",
    "entropy_bonus": "weight of the entropy bonus on the task weights (TA-MOO code's variant; 0: thesis)",
    "uniform_reg": "weight of the regulariser pulling the task weights towards uniform (0: off)",
    "cagrad_alpha": "CAGrad's alpha: the conflict-averse ball around the mean gradient g_0 has radius "
                    "alpha ||g_0|| (Liu et al. 2021)",
    "cagrad_rescale": "CAGrad's rescaling of the combined gradient: 0 none, 1 by 1 / (1 + alpha^2), 2 by "
                      "1 / (1 + alpha)",
    "hvm_nadir_scale": "hypervolume maximisation: nadir point as this multiple above the current losses",
    "nesterov": "NI-FGSM's Nesterov look-ahead x_t + alpha mu g_t before each gradient",
    "kernel": "TI-FGSM's smoothing kernel of the gradient: 'gaussian', 'linear', 'uniform' or None (off)",
    "len_kernel": "TI-FGSM's kernel size (pixels)",
    "nsig": "TI-FGSM's Gaussian kernel width: the kernel spans +- nsig standard deviations",
    "scale_center": "SI-NI-FGSM: the image the scaled copies shrink towards (0: black, as the paper)",
}

ATTACK_SPECIFIC: dict[str, dict[str, str]] = {
    "fgsm_rs": {"alpha": "step size of the one step after the random start (Wong et al. 2020: 1.25 eps)"},
    "rfgsm": {"alpha": "size of the random sign start, then a step of eps - alpha (Tramer et al. 2018)"},
    "fab": {"alpha_max": "FAB's largest weight of the step towards the original point",
            "eta": "FAB's overshoot factor of the projection step (> 1)",
            "beta": "FAB's backward-step factor towards x after a successful step"},
    "fab_t": {"alpha_max": "FAB's largest weight of the step towards the original point",
              "eta": "FAB's overshoot factor of the projection step (> 1)",
              "beta": "FAB's backward-step factor towards x after a successful step"},
    "square": {"n_queries": "query budget per point (model calls)",
               "p_init": "initial fraction of the image a square covers, shrunk on Square's schedule",
               "rescale_schedule": "rescale the p schedule when n_queries != 10000, as AutoAttack does"},
    "ead": {"beta": "weight of the L1 term in the elastic-net loss c f(x') + ||x' - x||_2^2 + beta ||x' - x||_1",
            "decision_rule": "which adversarial is kept: 'EN' (smallest elastic-net distance) or 'L1'",
            "initial_const": "the first trade-off constant c of the binary search (scalar or (B,))",
            "max_iterations": "iterations per binary-search round",
            "fista": "FISTA's momentum (True, the paper) or plain ISTA",
            "warm_start": "start each search round from the previous round's best point"},
    "cw_l2": {"c": "trade-off constant c of ||delta||_2^2 + c f(x') (the first c when binary_search_steps > 1)"},
    "spsa": {"delta": "SPSA's finite-difference perturbation size",
             "spsa_samples": "model calls per gradient estimate (even; cleverhans' spsa_samples)",
             "spsa_iters": "gradient estimates averaged per step",
             "early_stop_loss_threshold": "stop when the loss of every point is below this (None: never)",
             "sample_chunk": "estimate samples evaluated per model call (memory; None: all at once)"},
    "deepfool": {"overshoot": "factor (1 + overshoot) applied to the final perturbation",
                 "candidates": "number of classes (largest logits) considered at each step (None: all)"},
    "lm_pgd": {"momentum": "momentum of the gradient accumulation",
               "alpha_max": "largest step size of the line search (default 0.75 eps)",
               "alpha_min": "smallest step size of the line search (default 0.5 eps)",
               "alpha_min_late": "smallest step size after switch_step",
               "switch_step": "iteration at which alpha_min becomes alpha_min_late",
               "n_alpha": "number of step sizes tried per iteration"},
    "autoattack": {"version": "'standard', 'plus' or 'rand' (Croce & Hein 2020), or use attacks=[...]",
                   "attacks": "explicit list of stages, e.g. ['apgd-ce', 'square'], instead of version",
                   "on_stage_end": "callback(state) after every stage (saving a resumable state)",
                   "verbose": "print each stage's robust accuracy"},
    "apgd_t": {"use_largereps": "L1 only: each restart runs at 3 eps, 2 eps, eps (AutoAttack's L1 'standard' "
                                "schedule)"},
    "ead_en": {},
    "ead_l1": {},
    "moo_eot": {"mask_achieved_gradients": "drop achieved tasks' gradients from the weighted sum (the code's "
                                           "masked EoT quadratic)"},
}

for _variant in ("ead_en", "ead_l1"):  # the same search under a fixed decision rule
  ATTACK_SPECIFIC[_variant] = ATTACK_SPECIFIC["ead"]
_PROSE_END = re.compile(r"\n\s*\n")
_NEXT_ENTRY = re.compile(r"\.\s+[A-Za-z_`][\w`']*(?:\s*[,/]\s*[\w`']+)*:\s")
_CROSS_REFERENCE = re.compile(r"^(as|see|like) ``?[\w.]+``?\.?$")


def _docstrings(info) -> list[str]:
  fns = (*info.forwards_to, inspect.unwrap(info.factory))
  return [inspect.getdoc(fn) or "" for fn in fns]


def _from_docstring(doc: str, names) -> dict[str, str]:
  """``name: meaning`` entries of ``names`` anywhere in ``doc`` (a meaning runs to the next entry, a sentence
  that starts another entry, or a blank line)."""
  if not doc or not names:
    return {}
  alt = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
  entry = re.compile(rf"(?<![\w.`'])((?:{alt})(?:\s*(?:,|/|and)\s*(?:{alt}))*)\s*(?:\([^()]*\))?:\s+")
  out: dict[str, str] = {}
  matches = list(entry.finditer(doc))
  for i, m in enumerate(matches):
    stop = matches[i + 1].start() if i + 1 < len(matches) else len(doc)
    text = doc[m.end():stop]
    blank = _PROSE_END.search(text)
    text = " ".join((text[:blank.start()] if blank else text).split())
    sentence = _NEXT_ENTRY.search(text)  # "... . other: ..." starts an entry this attack does not take
    text = text[:sentence.start() + 1] if sentence else text
    text = text.rstrip(" .;,") if text.endswith((";", ",")) else text
    if not text:
      continue
    for name in re.split(r"\s*(?:,|/|and)\s*", m.group(1)):
      out.setdefault(name, text)
  return out


def option_docs(info, options) -> dict[str, str]:
  """{option: meaning} for every option in ``options`` of the attack ``info`` ('' where none is known)."""
  found: dict[str, str] = {}
  for doc in _docstrings(info):
    for k, v in _from_docstring(doc, options).items():
      found.setdefault(k, v)
  specific = ATTACK_SPECIFIC.get(info.name, {})
  out = {}
  for k in options:
    own = found.get(k, "")
    if _CROSS_REFERENCE.match(own):  # "as ``mim``": the shared meaning says more
      own = ""
    out[k] = specific.get(k) or own or SHARED.get(k, "")
  return out
