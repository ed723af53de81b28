"""train.select_best: scores every eval_every_epochs epochs, keeps the best checkpoint, survives a resume."""

import json

import jax
import numpy as np
import pytest

from jaxrobust.configs import load_config, validate_config
from jaxrobust.evaluate.robust import RobustEvaluator
from jaxrobust.models import make_apply
from jaxrobust.train.loop import Trainer, train_and_evaluate

FGSM = {"name": "fgsm", "label": "FGSM", "eps": 0.1}


def _cfg(tmp_path, name="run", **extra):
  over = ["train.epochs=4", "train.batch_size=64", "data.train_subset=320", "train.checkpoint_every_steps=5",
          "train.eval_every_epochs=1", "train.select_best=true", "optim.lr=0.5", "eval.attacks=[]"]
  over += [f"{k}={v}" for k, v in extra.items()]
  cfg = load_config("quickstart_digits", over)
  cfg["train"]["select_attack"] = dict(FGSM)
  cfg["output_dir"] = str(tmp_path / name)
  return cfg


def _records(run_dir):
  return [json.loads(l) for l in (run_dir / "selection.jsonl").read_text().splitlines() if l.strip()]


def test_best_epoch_is_kept_and_evaluated(tmp_path):
  cfg = _cfg(tmp_path)
  report = train_and_evaluate(cfg, progress=False)
  recs = _records(tmp_path / "run")
  assert [r["step"] for r in recs] == [5, 10, 15, 20]  # one score per epoch (5 steps each)
  scores = [r["score"] for r in recs]
  best = int(np.argmax(scores))  # first maximum: ties keep the earlier epoch
  assert [r["best"] for r in recs] == [s > max(scores[:i], default=-1) for i, s in enumerate(scores)]
  sel = report["selected"]
  assert sel["step"] == recs[best]["step"] == report["evaluated_step"] and sel["metric"] == "FGSM"
  assert sel["score"] == pytest.approx(scores[best])
  assert report["steps"] == 20
  # The final evaluation is of the selected weights: re-scoring them reproduces the recorded numbers.
  assert report["evaluation"]["clean_acc"] == pytest.approx(recs[best]["clean_acc"])
  trainer = Trainer(cfg, progress=False)
  state, meta = trainer.selector.restore(trainer.init_state())
  assert int(state.step) == sel["step"] and meta["score"] == pytest.approx(sel["score"])
  rep = RobustEvaluator(make_apply(trainer.module)).evaluate(
      trainer.variables(state), trainer.test_ds, [FGSM], progress=False,
      batch_size=int(cfg["eval"]["batch_size"]), key=jax.random.PRNGKey(int(cfg["seed"]) + 7919))
  assert rep["robust_acc"]["FGSM"] == pytest.approx(sel["score"])


def test_interrupted_run_resumes_with_the_same_selection(tmp_path):
  ref = Trainer(_cfg(tmp_path, "ref"), progress=False)
  ref.fit()
  cut = Trainer(_cfg(tmp_path, "cut"), progress=False)
  cut.fit(max_steps=12)  # stops mid-epoch 3; steps 5 and 10 were scored
  cut.checkpointer.close()
  import shutil
  for step in ("10", "12"):  # as if it crashed after scoring step 10 but before any checkpoint was written
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / step)
  again = Trainer(_cfg(tmp_path, "cut"), progress=False)
  again.fit()
  a, b = _records(tmp_path / "ref"), _records(tmp_path / "cut")
  assert [r["step"] for r in b] == [5, 10, 15, 20]  # the re-run of steps 1..12 scores nothing twice
  np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-6)
  assert ref.selector.best()["step"] == again.selector.best()["step"]


def test_select_config_errors(tmp_path):
  cfg = _cfg(tmp_path)
  cfg["train"]["eval_every_epochs"] = 0
  with pytest.raises(ValueError, match="select_best needs train.eval_every_epochs >= 1"):
    validate_config(cfg)
  cfg = _cfg(tmp_path)
  cfg["train"]["select_attack"] = "pgd"
  with pytest.raises(ValueError, match="select_attack must be an attack spec"):
    validate_config(cfg)


def test_cli_evaluates_the_selected_checkpoint(tmp_path):
  from jaxrobust.cli import main
  cfg = _cfg(tmp_path)
  report = train_and_evaluate(cfg, progress=False)
  out = tmp_path / "best.json"
  assert main(["evaluate", "--run-dir", cfg["output_dir"], "--best", "--no-progress", "--no-checks",
               "--json", str(out)]) == 0
  assert json.loads(out.read_text())["clean_acc"] == pytest.approx(report["evaluation"]["clean_acc"])
  plain = load_config("quickstart_digits", ["train.epochs=1", "data.train_subset=128", "train.batch_size=64"])
  plain["output_dir"] = str(tmp_path / "plain")
  Trainer(plain, progress=False).fit()
  with pytest.raises(SystemExit, match="no selected checkpoint"):
    main(["evaluate", "--run-dir", plain["output_dir"], "--best", "--no-progress"])
