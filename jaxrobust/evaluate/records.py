"""Evaluation records that never overwrite, each carrying what a reader needs to compare or redo it.

    record = provenance(seed=0, dataset=test, n=report["n"], attacks=specs)   # one helper for every writer
    write_record("runs/x/evaluation.json", dict(report, provenance=record))   # latest + appended history
    robustbench_summary(read_records("runs/x"), config)                       # RobustBench-style model info

Layout: the JSON file a command names (``evaluation.json``, ``report.json``, ...) holds the latest record;
every record is also appended, one line each, to ``evaluations.jsonl`` in the same folder, with its
``record_id`` and the ``file`` it was written as. Nothing is ever overwritten without its copy in the log.

Provenance of a record: the seed (and the key's data), the library and jax / jaxlib / flax / optax / numpy
versions, the git commit of the jaxrobust source and whether it had uncommitted changes (when it is a
git checkout), every attack's parameters in full (the registry's defaults filled in, so AutoAttack's
``version`` is always there), and the points: how many, how they were chosen (the first n of the split)
and a SHA-256 of their pixels and labels.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import platform
import subprocess
import uuid

import numpy as np

HISTORY = "evaluations.jsonl"
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "orbax-checkpoint")


def software_versions() -> dict:
  """{'jaxrobust', 'python', and each of jax, jaxlib, flax, optax, numpy, orbax-checkpoint}: installed versions."""
  import jaxrobust
  out = {"jaxrobust": jaxrobust.__version__, "python": platform.python_version()}
  for name in _PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


@functools.lru_cache(maxsize=1)
def git_state() -> dict | None:
  """{'commit', 'dirty'} of the git checkout holding the jaxrobust source, or None (an installed wheel, no git)."""
  import jaxrobust
  folder = os.path.dirname(os.path.abspath(jaxrobust.__file__))
  try:
    commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    if commit.returncode != 0:
      return None
    status = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no", "."],
                            capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def attack_in_full(spec: dict) -> dict:
  """The spec with every option ``get_attack`` would use: the registry's defaults filled in where the spec is
  silent (a required option without a value stays absent); the evaluator's own keys kept as given."""
  from jaxrobust.attacks.registry import attack_parameters
  from jaxrobust.evaluate.specs import reported, spec_label
  shown = reported(spec, spec.get("label") or spec_label(spec))
  defaults = {k: q.default for k, q in attack_parameters(spec["name"]).items()
              if q.default is not inspect.Parameter.empty and k not in shown}
  return {**shown, **{k: _plain(v) for k, v in defaults.items()}}


def points_digest(dataset, n: int | None = None) -> str:
  """SHA-256 (hex) of the first ``n`` points' pixels (as stored) and labels: equal digests, equal points."""
  n = len(dataset) if n is None else int(n)
  h = hashlib.sha256()
  images, labels = np.ascontiguousarray(dataset.images[:n]), np.asarray(dataset.labels[:n], np.int64)
  h.update(f"{images.dtype}{images.shape}".encode())
  h.update(images.tobytes())
  h.update(labels.tobytes())
  return h.hexdigest()


def provenance(*, seed: int | None, dataset=None, n: int | None = None, attacks=(), split: str = "test",
               key=None, **extra) -> dict:
  """What a result needs beside its numbers to be compared or redone.

  seed: the integer the PRNG key was made from (``key``: the key itself, recorded as its data when given);
  dataset / n: the evaluated split and how many of its first points were used (the digest covers those);
  attacks: the attack specs (recorded in full, ``attack_in_full``); extra: further fields (run_dir, step, ...).
  """
  import jax
  record = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seed": None if seed is None else int(seed), "versions": software_versions(), "git": git_state(),
            "backend": jax.default_backend(), "devices": jax.device_count()}
  if key is not None:
    record["key"] = np.asarray(jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                               else key).tolist()
  if dataset is not None:
    n = len(dataset) if n is None else int(n)
    record["points"] = {"n": n, "of": len(dataset), "split": split, "selection": f"first {n} in split order",
                        "sha256": points_digest(dataset, n)}
  record["attacks"] = [attack_in_full(dict(s)) for s in attacks]
  record.update(extra)
  return record


def write_record(path: str, record: dict, *, history: str = HISTORY) -> dict:
  """Writes ``record`` to ``path`` (the latest one) and appends it to ``history`` in the same folder.

  Adds 'record_id' (time-ordered, unique) and 'file' (``path``'s name) to the appended line and returns them.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
  ids = {"record_id": f"{stamp}-{uuid.uuid4().hex[:8]}", "file": os.path.basename(path)}
  text = json.dumps({**record, **ids}, default=_json_default)
  with open(path, "w") as f:
    json.dump(json.loads(text), f, indent=2)
  with open(os.path.join(folder, history), "a") as f:
    f.write(text + "\n")
  return ids


def read_records(folder: str, *, history: str = HISTORY) -> list[dict]:
  """Every record appended in ``folder``, oldest first ([] when there is none)."""
  path = os.path.join(folder, history)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def eval_scalars(report: dict) -> dict:
  """The headline numbers of an evaluator report as flat {name: float}: clean_acc, worst_case_acc,
  robust_acc/<label> (and clean_ap, robust_ap/<label> of a single-logit model)."""
  out = {k: float(report[k]) for k in ("clean_acc", "worst_case_acc", "clean_ap") if report.get(k) is not None}
  for group in ("robust_acc", "robust_ap"):
    out.update({f"{group}/{label}": float(v) for label, v in (report.get(group) or {}).items()})
  return out


def eps_text(eps: float) -> str:
  """RobustBench's way of writing a radius: '8/255' when eps * 255 is a whole number, else the decimal."""
  k = float(eps) * 255.0
  return f"{round(k)}/255" if k > 0 and abs(k - round(k)) < 1e-4 else f"{float(eps):g}"


def robustbench_summary(records: list[dict], config: dict, *, name: str | None = None) -> dict:
  """The newest AutoAttack result of ``records`` as RobustBench model-info fields.

  Fields as RobustBench's ``model_info`` JSON files write them (clean_acc / autoattack_acc in % as strings
  with two decimals, eps as '8/255'; paper fields left empty for the author to fill), plus threat_model,
  n_points and 'jaxrobust' (record_id, attack in full, provenance). Raises ValueError when no record has an
  AutoAttack evaluation, naming the command that makes one.
  """
  for record in reversed(records):
    report = record.get("evaluation", record)
    for spec in report.get("attacks", ()):
      if spec.get("name") != "autoattack" or spec.get("label") not in report.get("robust_acc", {}):
        continue
      prov = record.get("provenance") or report.get("provenance") or {}
      full = next((a for a in prov.get("attacks", ()) if a.get("label") == spec["label"]), spec)
      n = report.get("n_attacked", {}).get(spec["label"], report.get("n"))
      model = config.get("model", {})
      return {"link": "", "name": name or config.get("output_dir", ""), "authors": "", "additional_data": False,
              "number_forward_passes": 1, "dataset": config.get("data", {}).get("name", ""), "venue": "",
              "architecture": _architecture(model), "eps": eps_text(spec["eps"]),
              "clean_acc": f"{100 * float(report['clean_acc']):.2f}",
              "reported": "", "autoattack_acc": f"{100 * float(report['robust_acc'][spec['label']]):.2f}",
              "footnote": "", "threat_model": {"linf": "Linf", "l2": "L2", "l1": "L1"}.get(
                  str(full.get("norm", "linf")).lower(), str(full.get("norm"))),
              "n_points": int(n),
              "jaxrobust": {"record_id": record.get("record_id"), "attack": full, "provenance": prov}}
  raise ValueError("no AutoAttack evaluation recorded here: run `jaxrobust evaluate --run-dir RUN_DIR --attack "
                   "autoattack:eps=0.0313725` (8/255; the eps of your threat model) first")


def _architecture(model: dict) -> str:
  """The model section as one line: its name, then its other keywords (e.g. 'wide_resnet depth=34 width=10')."""
  return " ".join([str(model.get("name", "?"))] + [f"{k}={v}" for k, v in model.items() if k != "name"])


def _plain(value):
  return value if isinstance(value, (str, int, float, bool, type(None), list, tuple, dict)) else repr(value)


def _json_default(o):
  if isinstance(o, (np.floating, np.integer, np.bool_)):
    return o.item()
  if isinstance(o, np.ndarray) or hasattr(o, "__array__"):
    return np.asarray(o).tolist()
  return str(o)
