"""orbax checkpoints of the whole train state, with clear errors for corrupt or mismatched ones.

Layout: ``<dir>/<step>/{state, meta}``; ``meta`` is JSON (config, epoch, data position, the shape of every
leaf and the SHA-256 of every saved array's bytes). orbax writes each step to a temporary directory and
renames it when complete, so a run killed mid-save leaves the previous checkpoint as the latest valid one,
and the checksums are committed in the same rename as the arrays they describe. A restore recomputes them:
flipped or zeroed bytes raise ``CorruptCheckpointError`` naming the array and the previous good checkpoint
(``on_corrupt='previous'`` restores that one instead and moves the corrupt one aside to ``corrupt-<step>``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used: unreadable, corrupt, or for a different model/config."""


class CorruptCheckpointError(CheckpointError):
  """A checkpoint whose files are unreadable or whose arrays differ from the checksums saved with them."""


ON_CORRUPT = ("error", "previous")


def ensure_writable_dir(path: str, what: str, error: type[Exception] = PermissionError) -> None:
  """Creates ``path`` if needed; raises ``error`` naming ``what`` when it cannot be created or written."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise error(f"{what} {path!r} cannot be created: {e}") from e
  if not os.access(path, os.W_OK):
    raise error(f"{what} {path!r} is not writable")


class Checkpointer:
  """Saves every ``every_steps`` steps (and on demand); keeps the newest ``max_to_keep``."""

  def __init__(self, directory: str, *, every_steps: int = 100, max_to_keep: int = 2):
    directory = os.path.abspath(directory)
    ensure_writable_dir(directory, "checkpoint directory", CheckpointError)
    self.directory = directory
    self.every_steps = max(int(every_steps), 1)
    self._manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=False),
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def should_save(self, step: int) -> bool:
    return step % self.every_steps == 0

  def save(self, step: int, state, meta: dict[str, Any], *, force: bool = False) -> bool:
    if not force and not self.should_save(step):
      return False
    if step in self._manager.all_steps():
      return False
    # The shape manifest lets restore name exactly what differs before touching the arrays.
    meta = dict(meta, tree_shapes={k: list(v) for k, v in _leaf_shapes(state).items()},
                array_sha256=array_checksums(state))
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()
    return True

  def meta(self, step: int | None = None) -> dict:
    """The JSON metadata saved with a checkpoint (newest by default), without reading the arrays."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint found in {self.directory!r}")
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax raises many types for unreadable files
      raise CheckpointError(f"checkpoint {os.path.join(self.directory, str(step))!r} is unreadable or corrupt "
                            f"({type(e).__name__}: {e})") from e
    meta.pop("tree_shapes", None)
    meta.pop("array_sha256", None)
    return meta

  def restore(self, target_state, step: int | None = None, *, on_corrupt: str = "error"):
    """Restores ``(state, meta)`` into the structure of ``target_state`` (shapes and checksums checked).

    on_corrupt: 'error' raises CorruptCheckpointError naming the corrupt checkpoint and the previous good one;
    'previous' (newest checkpoint only, ``step=None``) warns, moves the corrupt one aside to
    ``corrupt-<step>`` and restores the newest good one.
    """
    if on_corrupt not in ON_CORRUPT:
      raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}; got {on_corrupt!r}")
    if step is not None:
      return self._restore_step(target_state, step)
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise CheckpointError(f"no checkpoint found in {self.directory!r}")
    try:
      return self._restore_step(target_state, steps[0])
    except CorruptCheckpointError as e:
      previous = self._previous_good(target_state, steps[1:])
      if on_corrupt == "error" or previous is None:
        hint = (f"the previous good checkpoint is step {previous}: set train.on_corrupt_checkpoint=previous to "
                f"resume from it (or restore(..., on_corrupt='previous'))" if previous is not None
                else "no earlier good checkpoint is kept; start a fresh run")
        raise CorruptCheckpointError(f"{e}; {hint}") from e
      aside = os.path.join(self.directory, f"corrupt-{steps[0]}")
      os.replace(os.path.join(self.directory, str(steps[0])), aside)
      self._manager.reload()
      warnings.warn(f"{e}; moved it to {aside!r} and resumed from the previous good checkpoint, step {previous}",
                    stacklevel=2)
      return self._restore_step(target_state, previous)

  def _previous_good(self, target_state, steps) -> int | None:
    for s in steps:
      try:
        self._restore_step(target_state, s)
        return s
      except CorruptCheckpointError:
        continue
    return None

  def _restore_step(self, target_state, step: int):
    path = os.path.join(self.directory, str(step))
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
      saved_shapes = meta.pop("tree_shapes")
    except Exception as e:  # orbax raises many types for unreadable files
      raise CorruptCheckpointError(f"checkpoint {path!r} is unreadable or corrupt ({type(e).__name__}: {e}). "
                                   "Delete it to resume from an earlier one, or start a fresh run.") from e
    saved_sums = meta.pop("array_sha256", None)  # None: written before checksums were stored
    _check_compatible(saved_shapes, target_state, path)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
    try:
      state = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as e:
      raise CorruptCheckpointError(f"checkpoint {path!r} could not be restored ({type(e).__name__}: {e}); "
                                   "it is corrupt or was written for a different model/config") from e
    if saved_sums is not None:
      check_checksums(saved_sums, state, path)
    return state, meta

  def close(self):
    self._manager.close()


def restore_variables(directory: str, step: int | None = None) -> tuple[dict, int]:
  """({'params', 'batch_stats'}, step) of the newest (or given) checkpoint in ``directory``.

  Restores without a target structure, so the run may have used any method or optimiser; only the
  model's variables are kept. Raises FileNotFoundError when there is no checkpoint, CheckpointError
  when it is unreadable.
  """
  directory = os.path.abspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoint folder {directory!r}")
  manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
  try:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{directory!r} holds no checkpoint")
    path = os.path.join(directory, str(step))
    try:
      restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                               meta=ocp.args.JsonRestore()))
      state, meta = restored["state"], restored["meta"]
    except Exception as e:  # orbax raises many types for unreadable files
      raise CorruptCheckpointError(f"checkpoint {path!r} is unreadable or corrupt ({type(e).__name__}: {e})") from e
    # The checksums name TrainState fields ('.params[...]'); the target-free restore gives a dict ("['params'][...]").
    saved = {f"['{k[1:k.index('[')]}']{k[k.index('['):]}": v for k, v in (meta.get("array_sha256") or {}).items()
             if k.startswith((".params[", ".batch_stats["))}
    check_checksums(saved, {k: state[k] for k in ("params", "batch_stats") if k in state}, path)
  finally:
    manager.close()
  return {"params": state["params"], "batch_stats": state.get("batch_stats", {}) or {}}, int(step)


def _host_bytes(leaf) -> np.ndarray:
  """The host copy of a (replicated) leaf; across processes, this process's copy."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    return np.asarray(leaf.addressable_data(0))
  return np.asarray(leaf)


def array_checksums(tree) -> dict[str, str]:
  """{leaf path: SHA-256 of dtype, shape and bytes} of every array of ``tree``."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.ascontiguousarray(_host_bytes(leaf))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    out[jax.tree_util.keystr(path)] = h.hexdigest()
  return out


def check_checksums(saved: dict[str, str], tree, path: str) -> None:
  """Raises CorruptCheckpointError naming the arrays of ``tree`` whose checksum differs from ``saved``."""
  now = array_checksums(tree)
  bad = sorted(k for k in saved if now.get(k) != saved[k])
  if bad:
    raise CorruptCheckpointError(f"checkpoint {path!r} is corrupt: {len(bad)} saved array(s) differ from the "
                                 f"checksums written with them (e.g. {', '.join(bad[:3])})")


def _check_compatible(saved: dict, target, path: str) -> None:
  """Raises CheckpointError naming the first leaf whose path/shape differs."""
  want = _leaf_shapes(target)
  missing = sorted(set(want) - set(saved))
  extra = sorted(set(saved) - set(want))
  if missing or extra:
    raise CheckpointError(
        f"checkpoint {path!r} does not match this model/config: "
        f"{len(missing)} entries missing (e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]})")
  for k, shape in want.items():
    if tuple(saved[k]) != tuple(shape):
      raise CheckpointError(f"checkpoint {path!r} does not match this model/config: {k} has shape "
                            f"{tuple(saved[k])} in the checkpoint but {tuple(shape)} in the model")


def _leaf_shapes(tree) -> dict[str, tuple]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  out = {}
  for path, leaf in flat:
    shape = getattr(leaf, "shape", None)
    if shape is None:
      shape = np.shape(leaf)
    out[jax.tree_util.keystr(path)] = tuple(shape)
  return out


def write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f, indent=2, default=_json_default)


def _json_default(o):
  if isinstance(o, (np.floating, np.integer)):
    return o.item()
  if isinstance(o, np.ndarray) or hasattr(o, "__array__"):
    return np.asarray(o).tolist()
  return str(o)
