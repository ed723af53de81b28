"""jaxrobust.runs.load_run: a trained run's model as a pure apply function, without a Trainer or data.

    python -m pytest -q tests/test_runs.py

One tiny run (digits, 1 epoch, 256 images, model selection on) is trained from a user's config file,
which also checks ``jaxrobust train --config path/to/file.py``.
"""

import json

import numpy as np
import pytest

from jaxrobust.cli import main
from jaxrobust.runs import LoadedRun, load_run
from jaxrobust.train.checkpoint import CheckpointError

USER_CONFIG = '''
from jaxrobust.configs.quickstart_digits import get_config as quickstart


def get_config():
  cfg = quickstart()
  cfg["train"].update(epochs=1, eval_every_epochs=1, select_best=True)
  cfg["data"].update(train_subset=256)
  cfg["eval"]["attacks"] = []
  return cfg
'''


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  config_file = root / "my_config.py"
  config_file.write_text(USER_CONFIG)
  run = root / "run"
  assert main(["train", "--config", str(config_file), "--output-dir", str(run), "--no-progress"]) == 0
  return run


def test_user_config_file_trains(run_dir):
  cfg = json.loads((run_dir / "config.json").read_text())
  assert cfg["config_name"].endswith("my_config.py") and cfg["train"]["select_best"]
  assert json.loads((run_dir / "report.json").read_text())["steps"] == 4


def test_load_run_restores_the_evaluated_model(run_dir):
  from jaxrobust.data import load_splits
  run = load_run(str(run_dir))
  assert isinstance(run, LoadedRun) and run.step == 4
  assert run.config["data"]["name"] == "digits" and run.config["output_dir"] == str(run_dir)
  assert set(run.variables) == {"params", "batch_stats"}
  test = load_splits(run.config["data"]).test
  x = np.asarray(test.images, np.float32) / 255.0
  logits = np.asarray(run.apply(run.variables, x))
  assert logits.shape == (len(test), 10)
  report = json.loads((run_dir / "report.json").read_text())
  # report.json evaluated the selected checkpoint (train.select_best); it is the only one, at step 4.
  best = load_run(str(run_dir), best=True)
  assert best.step == report["selected"]["step"] == 4
  acc = float(np.mean(np.argmax(np.asarray(best.apply(best.variables, x)), -1) == np.asarray(test.labels)))
  assert acc == pytest.approx(report["evaluation"]["clean_acc"], abs=1e-6)


def test_load_run_overrides_and_model_mismatch(run_dir):
  run = load_run(str(run_dir), overrides=["data.test_subset=50", "eval.batch_size=10"])
  assert run.config["data"]["test_subset"] == 50 and run.config["eval"]["batch_size"] == 10
  with pytest.raises(CheckpointError, match="does not match the model"):
    load_run(str(run_dir), overrides=["model.hidden=50"])
  with pytest.raises(ValueError, match="did you mean data.test_subset"):
    load_run(str(run_dir), overrides=["data.test_subsett=50"])


def test_load_run_clear_errors(run_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="not a jaxrobust run directory"):
    load_run(str(tmp_path))
  (tmp_path / "config.json").write_text((run_dir / "config.json").read_text())
  with pytest.raises(FileNotFoundError, match="no checkpoint in"):
    load_run(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="has no selected checkpoint"):
    load_run(str(tmp_path), best=True)
