"""The training loop: data -> sharded jitted steps -> checkpoints, JSON-lines metrics, report.

``Trainer(config).run()`` trains (resuming from the newest checkpoint in
``<output_dir>/checkpoints`` when there is one), evaluates and writes ``report.json``.
Resuming is exact: the data order is a function of (seed, epoch), the PRNG key lives in the
state, and the loop skips the batches of the current epoch already consumed.
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrobust import data as data_lib
from jaxrobust import parallel
from jaxrobust.configs.base import validate_config
from jaxrobust.methods.base import DatasetInfo
from jaxrobust.methods.registry import get_method
from jaxrobust.train.batches import training_batches
from jaxrobust.train.checkpoint import Checkpointer, ensure_writable_dir, write_json
from jaxrobust.train.optim import make_optimizer, make_schedule
from jaxrobust.train.state import TrainState, create_train_state, variables_of
from jaxrobust.train.step import FINITE, make_train_step


def _method_kwargs(cfg):
  return {k: v for k, v in cfg["method"].items() if k != "name"}


def _model_kwargs(cfg):
  return {k: v for k, v in cfg["model"].items() if k != "name"}


def build_model(cfg, num_classes: int, image_shape=None):
  """The config's model: a library model (``get_model``), or a factory path's own JAX model
  (``models.external``; it may take ``input_shape`` (H, W, C), read from the data when not given)."""
  from jaxrobust.models import get_model
  from jaxrobust.models.external import from_factory, is_factory_path
  name = cfg["model"]["name"]
  if not is_factory_path(name):
    return get_model(name, num_classes, **_model_kwargs(cfg))
  if image_shape is None:
    image_shape = data_lib.dataset_info(cfg["data"]["name"]).image_shape
  return from_factory(name, num_classes=num_classes, input_shape=image_shape, seed=int(cfg["seed"]),
                      **_model_kwargs(cfg))


def load_splits(cfg):
  """(train, test) of ``jaxrobust.data.load_splits(cfg['data'])``."""
  splits = data_lib.load_splits(cfg["data"])
  return splits.train, splits.test


class NonFiniteLossError(FloatingPointError):
  """A training step's loss, one of the method's loss terms or the gradient norm is NaN or infinite."""


class Trainer:
  """Owns one run: model, method, optimiser, mesh, jitted step and checkpointer."""

  def __init__(self, cfg: dict, *, train_ds=None, test_ds=None, val_ds=None, progress: bool = True,
               overwrite: bool = False):
    """overwrite: the output directory may hold another run (a config.json of a different training config):
    its files are removed first. Without it such a folder is refused; the same config resumes."""
    validate_config(cfg)
    self.cfg = cfg
    self.progress = progress
    self.output_dir = os.path.abspath(cfg["output_dir"])
    ensure_writable_dir(self.output_dir, "output directory")
    _claim_output_dir(self.output_dir, cfg, overwrite)
    # The run's record: written by the run that starts it, never by a resume or by `jaxrobust evaluate`
    # (which load it, possibly with overrides, and may then fail the config check).
    if parallel.is_main_process() and not _has_checkpoints(os.path.join(self.output_dir, "checkpoints")):
      write_json(os.path.join(self.output_dir, "config.json"), cfg)
    if train_ds is None:
      splits = data_lib.load_splits(cfg["data"])
      train_ds, val_ds, test_ds = splits.train, splits.val, splits.test
    self.train_ds, self.val_ds, self.test_ds = train_ds, val_ds, test_ds
    _check_eval_prefixes(cfg, test_ds)  # fail before training, not after it
    _check_split_classes(train_ds, val_ds, test_ds)
    self.events = None  # train.tensorboard: an event file beside metrics.jsonl (main process only)
    if cfg["train"].get("tensorboard", False) in (True, "true") and parallel.is_main_process():
      from jaxrobust.event_file import EventFileWriter
      self.events = EventFileWriter(os.path.join(self.output_dir, "tensorboard"))
    t = cfg["train"]
    self.batch_size = int(t["batch_size"])
    self.mesh = parallel.make_mesh(t.get("num_devices"))
    parallel.check_batch_divisible(self.batch_size, self.mesh)
    self.steps_per_epoch = len(train_ds) // self.batch_size
    if self.steps_per_epoch < 1:
      raise ValueError(f"train.batch_size {self.batch_size} is larger than the training set "
                       f"({len(train_ds)} examples)")
    self.epochs = int(t["epochs"])
    self.total_steps = self.steps_per_epoch * self.epochs
    self.num_classes = train_ds.num_classes
    self.module = build_model(cfg, self.num_classes, train_ds.image_shape)
    self.method = get_method(cfg["method"]["name"], **_method_kwargs(cfg))
    _check_features(self.method, self.module, cfg)
    o = cfg["optim"]
    self.schedule = make_schedule(lr=float(o["lr"]), schedule=o.get("schedule", "constant"),
                                  steps_per_epoch=self.steps_per_epoch, epochs=self.epochs,
                                  boundaries=tuple(o.get("boundaries", ())), decay=_decay(o.get("decay", 0.1)),
                                  warmup_epochs=float(o.get("warmup_epochs", 0.0)))
    self.tx = make_optimizer(name=o.get("name", "sgd"), lr_schedule=self.schedule,
                             momentum=float(o.get("momentum", 0.9)), nesterov=bool(o.get("nesterov", False)),
                             weight_decay=float(o.get("weight_decay", 0.0)))
    augment = None
    if cfg["data"].get("augment"):
      from jaxrobust.data import random_crop_flip
      augment = random_crop_flip
    step = make_train_step(self.module, self.method, self.tx, steps_per_epoch=self.steps_per_epoch,
                           num_classes=self.num_classes, augment=augment)
    repl, data = parallel.replicated(self.mesh), parallel.data_sharded(self.mesh)
    self.step_fn = jax.jit(step, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=(0,))
    self.checkpointer = Checkpointer(os.path.join(self.output_dir, "checkpoints"),
                                     every_steps=int(t.get("checkpoint_every_steps", 200)))
    self.selector = ModelSelector(self) if t.get("select_best") else None

  # -------------------------------------------------------------------------------------
  def init_state(self) -> TrainState:
    from jaxrobust.models import init_model
    seed = int(self.cfg["seed"])
    init_key, state_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = init_model(self.module, init_key, (1,) + tuple(self.train_ds.image_shape))
    info = DatasetInfo(num_examples=len(self.train_ds), num_classes=self.num_classes,
                       labels=np.asarray(self.train_ds.labels))
    state = create_train_state(variables, self.tx, state_key, self.method.init_state(info))
    return parallel.replicate(state, self.mesh)

  def restore_or_init(self, resume: bool = True) -> TrainState:
    # train.init_from=<run dir> starts from another run's weights (e.g. AP Max. from a CE model)
    from jaxrobust.train.init_from import init_state_from_config
    state = init_state_from_config(self)
    if not resume and self.checkpointer.latest_step() is not None:
      from jaxrobust.train.checkpoint import CheckpointError
      raise CheckpointError(f"resume is off but {self.checkpointer.directory!r} already holds checkpoints "
                            f"(newest step {self.checkpointer.latest_step()}); use a new output_dir or delete them")
    if resume and self.checkpointer.latest_step() is not None:
      state, meta = self.checkpointer.restore(state, on_corrupt=self.cfg["train"].get("on_corrupt_checkpoint", "error"))
      if meta.get("config_fingerprint") != _fingerprint(self.cfg):
        from jaxrobust.train.checkpoint import CheckpointError
        raise CheckpointError(
            f"the checkpoint in {self.checkpointer.directory!r} was written by a different config "
            f"(method/model/data/optim/train differ); use a new output_dir or delete it")
      state = parallel.replicate(state, self.mesh)
    return state

  def _meta(self, step: int) -> dict:
    return {"step": int(step), "config_fingerprint": _fingerprint(self.cfg),
            "steps_per_epoch": self.steps_per_epoch}

  def batches(self, epoch: int, skip: int = 0):
    """Training batches of ``epoch`` from the ``skip``-th on: the sampler ``data.sampler`` names or
    the method declares (``jaxrobust.train.batches``); a function of (seed, epoch) only."""
    yield from training_batches(self.train_ds, self.method, self.cfg["data"], seed=int(self.cfg["seed"]),
                                batch_size=self.batch_size, epoch=epoch, skip=skip)

  # -------------------------------------------------------------------------------------
  def fit(self, state: TrainState | None = None, *, resume: bool = True,
          max_steps: int | None = None, on_step=None) -> TrainState:
    """Trains until ``epochs`` (or ``max_steps`` total steps) and checkpoints at the end.

    on_step(step, state): called after every step (after its checkpoint, if one was due).
    """
    if state is None:
      state = self.restore_or_init(resume)
    start = int(state.step)
    end = self.total_steps if max_steps is None else min(self.total_steps, int(max_steps))
    log_every = max(int(self.cfg["train"].get("log_every_steps", 20)), 1)
    metrics_path = os.path.join(self.output_dir, "metrics.jsonl")
    main = parallel.is_main_process()
    bar = _progress(total=end, initial=start, enabled=self.progress and main, desc=f"train {self.method.name}")
    pending: list = []  # device-side metrics, fetched only when logging (no per-step host sync)
    inflight: collections.deque = collections.deque()  # dispatched steps the bar has not counted yet
    t_last = time.perf_counter()
    step = start
    if main:  # a run killed after logging past its last checkpoint redoes those steps: drop their lines
      truncate_jsonl(metrics_path, start)
    with open(metrics_path if main else os.devnull, "a") as mfile:
      while step < end:
        epoch, offset = divmod(step, self.steps_per_epoch)
        for batch in self.batches(epoch, skip=offset):
          batch = parallel.shard_batch({k: batch[k] for k in ("image", "label", "index")}, self.mesh)
          state, metrics = self.step_fn(state, batch)
          step += 1
          pending.append(metrics)
          if bar is not None:  # count finished steps, not dispatched ones (is_ready never blocks)
            inflight.append(metrics)
            bar.update(_pop_finished(inflight))
          saving = self.checkpointer.should_save(step) or (self.selector is not None and self.selector.due(step))
          if saving and not (step % log_every == 0 or step == end):
            # never checkpoint (or score) a state past a non-finite step; saving syncs anyway
            self._check_finite(jax.device_get([m[FINITE] for m in pending]), step - len(pending) + 1, pending)
          if step % log_every == 0 or step == end:
            host = jax.device_get(pending)
            if bar is not None:  # the fetch waited for every dispatched step
              bar.update(len(inflight))
              inflight.clear()
            self._check_finite([m[FINITE] for m in host], step - len(host) + 1, host)
            now = time.perf_counter()
            record = {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != FINITE}
            record.update(step=step, epoch=step / self.steps_per_epoch, lr=float(self.schedule(step - 1)),
                          examples_per_s=len(host) * self.batch_size / max(now - t_last, 1e-9))
            mfile.write(json.dumps(record) + "\n")
            mfile.flush()
            if self.events is not None:
              self.events.scalars({f"train/{k}": v for k, v in record.items() if k != "step"}, step)
            if bar is not None:
              bar.set_postfix(loss=f"{record['loss']:.3f}",
                              acc=f"{record.get('adv_acc', record.get('acc', float('nan'))):.3f}")
            pending, t_last = [], now
          if self.selector is not None:  # before the checkpoint: a resume redoes a selection, never skips one
            self.selector.maybe_select(step, state, final=step == self.total_steps)
          if self.checkpointer.should_save(step):  # meta only when saving: no per-step host sync
            self.checkpointer.save(step, state, self._meta(step))
          if on_step is not None:
            on_step(step, state)
          if step >= end:
            break
    if bar is not None:
      bar.close()
    self.checkpointer.save(step, state, self._meta(step), force=True)
    return state

  def _check_finite(self, flags, first_step: int, metrics: list) -> None:
    """Raises NonFiniteLossError at the first step whose flag is False (steps first_step, first_step + 1, ...),
    naming the metrics that went non-finite; the newest checkpoint stays the last one before it."""
    for i, ok in enumerate(flags):
      if bool(ok):
        continue
      m = jax.device_get(metrics[i])
      bad = sorted(k for k, v in m.items() if k != FINITE and not np.all(np.isfinite(np.asarray(v, np.float64))))
      last = self.checkpointer.latest_step()
      raise NonFiniteLossError(
          f"training step {first_step + i} (epoch {(first_step + i - 1) // self.steps_per_epoch}) gave a non-finite "
          f"{', '.join(bad) or 'loss'} ({', '.join(f'{k}={float(np.mean(m[k]))}' for k in bad)}); stopped without "
          f"saving it. The newest checkpoint is "
          f"{'step ' + str(last) if last is not None else 'none'} in {self.checkpointer.directory!r}. Check the "
          "method's hyper-parameters (e.g. method.beta) and optim.lr.")

  def variables(self, state: TrainState) -> dict:
    return jax.device_get(variables_of(state))


def _pop_finished(inflight: collections.deque) -> int:
  """Drops the finished steps at the front of ``inflight`` (their metrics computed) and counts them; steps
  finish in dispatch order, so the first unfinished one ends the count."""
  done = 0
  while inflight:
    leaves = jax.tree.leaves(inflight[0])
    if leaves and hasattr(leaves[0], "is_ready") and not leaves[0].is_ready():
      break
    inflight.popleft()
    done += 1
  return done


def _progress(*, total, initial, enabled, desc):
  if not enabled:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def _fingerprint(cfg) -> str:
  """Hash of everything that changes the training trajectory (not output_dir / eval)."""
  import hashlib
  keep = {k: cfg[k] for k in ("seed", "data", "model", "method", "optim") if k in cfg}
  if keep.get("data", {}).get("subset_seed", None) is None:  # added later; unset = the old behaviour,
    keep["data"] = {k: v for k, v in keep["data"].items() if k != "subset_seed"}  # so older runs resume
  keep["train"] = {k: v for k, v in cfg["train"].items()
                   if k in ("epochs", "batch_size")}
  return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ModelSelector:
  """``train.select_best``: score the model every ``eval_every_epochs`` epochs, keep the best checkpoint.

  score = clean accuracy, or robust accuracy under ``train.select_attack``, on the first
  ``select_examples`` points of ``train.select_split`` (UDR's code selects on the test set's PGD-20
  accuracy; that makes the reported test numbers optimistic, as the papers' are); with
  ``select_metric='ap'`` the clean or robust average precision instead (AdAP selects on the
  validation split's robust AP). Each score is a line of selection.jsonl; the best
  state goes to <output_dir>/best (one orbax checkpoint, its metadata holding epoch, step and score), so a
  resumed run continues with the same best-so-far. The rule is ``jaxrobust.evaluate.selection.improves``:
  ties keep the earlier epoch, NaN never wins.
  """

  def __init__(self, trainer: "Trainer"):
    from jaxrobust.evaluate.robust import RobustEvaluator
    from jaxrobust.evaluate.selection import ScoreLog
    from jaxrobust.models import make_apply
    t = trainer.cfg["train"]
    self.trainer = trainer
    self.every = int(t["eval_every_epochs"])
    self.attack = t.get("select_attack")
    self.label = None if self.attack is None else str(self.attack.get("label", self.attack["name"]))
    if self.attack is not None:
      self.attack = dict(self.attack, label=self.label)
    n = t.get("select_examples")
    self.split = t.get("select_split", "test")
    split = trainer.val_ds if self.split == "val" else trainer.test_ds
    if split is None:
      raise ValueError(f"train.select_split={self.split!r}: the data has no {self.split} split "
                       "(a validation split needs data.binary_task and data.val_fraction > 0)")
    self.dataset = split.take(int(n)) if n else split
    if n:
      from jaxrobust.data.dataset import check_prefix_classes
      check_prefix_classes(split, int(n), f"train.select_examples={n}")
    self.metric = t.get("select_metric", "accuracy")
    if self.metric == "ap":
      from jaxrobust.evaluate.average_precision import APEvaluator
      self.evaluator = APEvaluator(make_apply(trainer.module), mesh=trainer.mesh)
    else:
      self.evaluator = RobustEvaluator.for_module(trainer.module, mesh=trainer.mesh)
    self.checkpointer = Checkpointer(os.path.join(trainer.output_dir, "best"), every_steps=1 << 62, max_to_keep=1)
    self.path = os.path.join(trainer.output_dir, "selection.jsonl")
    self.log = ScoreLog(self.path, write=parallel.is_main_process())

  def best(self) -> dict | None:
    """{'epoch', 'step', 'score', ...} of the kept checkpoint, or None."""
    return None if self.checkpointer.latest_step() is None else self.checkpointer.meta()

  def due(self, step: int) -> bool:
    """Whether ``maybe_select`` scores the model after ``step``."""
    epoch, rest = divmod(step, self.trainer.steps_per_epoch)
    return step == self.trainer.total_steps or not (rest or epoch % self.every)

  def maybe_select(self, step: int, state, *, final: bool = False) -> None:
    epoch, rest = divmod(step, self.trainer.steps_per_epoch)
    if not final and (rest or epoch % self.every):
      return
    if step in {r["step"] for r in self.log.records()}:  # a resumed run passing a step it already scored
      return
    variables = self.trainer.variables(state)
    attacks = [] if self.attack is None else [self.attack]
    kw = dict(batch_size=int(self.trainer.cfg["eval"]["batch_size"]),
              key=jax.random.PRNGKey(int(self.trainer.cfg["seed"]) + 7919))
    if self.metric == "ap":
      rep = self.evaluator.evaluate(variables, self.dataset, attacks, **kw)
      score = rep["clean_ap"] if self.label is None else rep["robust_ap"][self.label]
    else:
      rep = self.evaluator.evaluate(variables, self.dataset, attacks, progress=False, **kw)
      score = rep["clean_acc"] if self.label is None else rep["robust_acc"][self.label]
    from jaxrobust.evaluate.selection import improves
    best = self.best()
    improved = improves(score, None if best is None else best["score"])
    metric = ("AP " if self.metric == "ap" else "") + (self.label or "clean")
    record = {"step": int(step), "epoch": step / self.trainer.steps_per_epoch, "score": float(score),
              "clean_acc": rep["clean_acc"], "metric": metric, "split": self.split, "n": rep["n"], "best": improved}
    if improved:
      self.checkpointer.save(step, state, dict(self.trainer._meta(step), epoch=record["epoch"], score=float(score),
                                               metric=record["metric"]), force=True)
    self.log.append(record)
    if self.trainer.events is not None:
      self.trainer.events.scalars({f"select/{metric}": float(score), "select/clean_acc": float(rep["clean_acc"])}, step)

  def restore(self, like_state) -> tuple[Any, dict]:
    """(best state, its metadata); raises CheckpointError if there is none."""
    state, meta = self.checkpointer.restore(like_state)
    meta.pop("tree_shapes", None)
    meta.pop("array_sha256", None)
    return state, meta


def train_and_evaluate(cfg: dict, *, progress: bool = True, resume: bool = True,
                       transfer_source: tuple | None = None, overwrite: bool = False) -> dict[str, Any]:
  """Trains per config, evaluates the final (or, with train.select_best, the selected) model with
  ``cfg['eval']`` and writes report.json. overwrite: see ``Trainer``.

  transfer_source: (apply, variables) of the surrogate ``eval.transfer_from`` names (the caller loads
  it: ``jaxrobust.runs.load_run``); the AP report then has the transfer column.
  """
  if cfg["eval"].get("transfer_from") and transfer_source is None:
    raise ValueError("eval.transfer_from is set: pass transfer_source=(apply, variables) of that run "
                     "(jaxrobust.runs.load_run(cfg['eval']['transfer_from'])); `jaxrobust train` does it")
  from jaxrobust.evaluate.records import eval_scalars, provenance, write_record
  from jaxrobust.evaluate.robust import evaluate_from_config
  t0 = time.perf_counter()
  trainer = Trainer(cfg, progress=progress, overwrite=overwrite)
  state = trainer.fit(resume=resume)
  train_s = time.perf_counter() - t0
  selected = None
  if trainer.selector is not None:
    state, selected = trainer.selector.restore(state)
    selected = {k: selected[k] for k in ("step", "epoch", "score", "metric")}
  variables = trainer.variables(state)
  from jaxrobust.models import make_apply, make_member_apply
  from jaxrobust.models.ensemble import is_ensemble
  eval_report = evaluate_from_config(make_apply(trainer.module), variables, trainer.test_ds, cfg,
                                     progress=progress, mesh=trainer.mesh,
                                     member_apply=make_member_apply(trainer.module) if is_ensemble(trainer.module)
                                     else None)
  ap_attacks = list(cfg["eval"].get("ap_attacks") or ())
  if transfer_source is not None:
    from jaxrobust.evaluate.average_precision import transfer_spec
    ap_attacks.append(transfer_spec(*transfer_source))
  if ap_attacks:
    from jaxrobust.evaluate.average_precision import evaluate_ap
    eval_report["average_precision"] = evaluate_ap(make_apply(trainer.module), variables, trainer.test_ds,
                                                   ap_attacks, mesh=trainer.mesh,
                                                   batch_size=int(cfg["eval"]["batch_size"]))
  report = {"config": cfg, "steps": trainer.total_steps, "evaluated_step": int(state.step), "selected": selected,
            "train_seconds": train_s,
            "devices": int(trainer.mesh.devices.size), "backend": jax.default_backend(),
            "evaluation": eval_report,
            "provenance": provenance(seed=int(cfg.get("seed", 0)) + 1, dataset=trainer.test_ds, n=eval_report["n"],
                                     attacks=cfg["eval"].get("attacks", ()), train_seed=int(cfg.get("seed", 0)),
                                     checkpoint_step=int(state.step))}
  write_record(os.path.join(trainer.output_dir, "report.json"), report)
  if trainer.events is not None:
    trainer.events.scalars({f"eval/{k}": v for k, v in eval_scalars(eval_report).items()}, int(state.step))
    trainer.events.close()
  trainer.checkpointer.close()
  if trainer.selector is not None:
    trainer.selector.checkpointer.close()
  return report


def _decay(value):
  """optim.decay: one factor, or one per boundary (a list from JSON / key=value overrides)."""
  if isinstance(value, (list, tuple)):
    return tuple(float(v) for v in value)
  return float(value)


def _check_features(method, module, cfg) -> None:
  from jaxrobust.models.external import has_features
  if method.needs_features and not has_features(module):
    raise ValueError(f"method {method.name!r} trains on the model's latent features, but model "
                     f"{cfg['model']['name']!r} does not return them: give its __call__ (or apply) a "
                     "return_features keyword returning (logits, features) (see jaxrobust.models.external), "
                     "or train it with a method that reads only logits")


def _check_split_classes(train_ds, val_ds, test_ds) -> None:
  """The model gets the training split's class count; a validation or test split with another count would be
  scored against logits of the wrong size (labels >= K read NaN), so it is refused before training."""
  for split, ds in (("val", val_ds), ("test", test_ds)):
    if ds is not None and ds.num_classes != train_ds.num_classes:
      raise ValueError(f"the {split} split {ds.name!r} has {ds.num_classes} classes but the training split "
                       f"{train_ds.name!r} (which sizes the model) has {train_ds.num_classes}: use splits of one dataset")


def _check_eval_prefixes(cfg: dict, test_ds) -> None:
  """Before training: an evaluation attack limited to the first m test points must see every class."""
  from jaxrobust.evaluate.specs import attack_limits, spec_label
  if test_ds is None:
    return
  limit = cfg["eval"].get("max_examples")
  ds = test_ds.take(int(limit)) if limit else test_ds
  attacks = cfg["eval"].get("attacks", ())
  attack_limits(ds, attacks, [spec_label(s) for s in attacks])


# What a run writes into its output directory (removed by ``overwrite``).
RUN_FILES = ("config.json", "metrics.jsonl", "selection.jsonl", "report.json", "checkpoints", "best")


def _claim_output_dir(output_dir: str, cfg: dict, overwrite: bool) -> None:
  """Refuses an output directory holding another run's config.json (a different training config: its
  metrics and checkpoints would be mixed with this run's), unless ``overwrite`` removes that run first."""
  previous = os.path.join(output_dir, "config.json")
  if not os.path.exists(previous):
    return
  try:
    with open(previous) as f:
      same = _fingerprint(json.load(f)) == _fingerprint(cfg)
  except (OSError, ValueError, KeyError, TypeError):
    same = False
  if same:
    return  # a resume (or a re-evaluation) of this run
  if not overwrite:
    from jaxrobust.train.checkpoint import CheckpointError
    raise CheckpointError(
        f"output directory {output_dir!r} holds another run (its config.json is a different config: "
        "method/model/data/optim/train differ); use a new --output-dir, or --overwrite (Trainer(overwrite=True)) "
        "to delete that run's files first")
  if parallel.is_main_process():
    import shutil
    for name in RUN_FILES:
      path = os.path.join(output_dir, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)


def truncate_jsonl(path: str, step: int) -> None:
  """Drops the lines of a JSON-lines log whose 'step' is past ``step`` (and a torn last line), atomically."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = []
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue  # a line cut by a kill mid-write
    if int(record.get("step", 0)) <= step:
      keep.append(line if line.endswith("\n") else line + "\n")
  if keep != lines:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(keep)
    os.replace(tmp, path)


def _has_checkpoints(directory: str) -> bool:
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))
