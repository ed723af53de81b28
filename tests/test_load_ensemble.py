"""Separately trained runs evaluated as one ensemble (runs.load_ensemble; the CLI's repeated --run-dir)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.cli import main
from jaxrobust.runs import load_ensemble, load_run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  dirs = []
  for name, model in (("a", ["model.name=mlp", "model.hidden_sizes=(16,)"]), ("b", [])):
    out = root / name
    assert main(["train", "--config", "quickstart_digits", "--output-dir", str(out), "--no-progress",
                 "train.epochs=1", "data.train_subset=256", "eval.attacks=[]", *model]) == 0
    dirs.append(str(out))
  return dirs


def test_ensemble_of_runs_averages_their_probabilities(two_runs):
  ens = load_ensemble(two_runs)
  x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 1))
  probs = [jax.nn.softmax(load_run(d).apply(load_run(d).variables, x)) for d in two_runs]
  np.testing.assert_allclose(jax.nn.softmax(ens.apply(ens.variables, x)), (probs[0] + probs[1]) / 2, atol=1e-6)
  assert ens.config["model"]["name"] == "ensemble" and len(ens.config["ensemble_of"]) == 2
  with pytest.raises(ValueError, match="at least 2"):
    load_ensemble(two_runs[:1])


def test_cli_evaluates_an_ensemble_of_runs(two_runs, tmp_path, capsys):
  out = tmp_path / "ens.json"
  assert main(["evaluate", "--run-dir", two_runs[0], "--run-dir", two_runs[1], "--attack", "moo_ens:eps=0.1,steps=3",
               "--attack", "pgd:eps=0.1,steps=3,step_size=0.05", "--max-examples", "40", "--no-progress",
               "--no-checks", "--json", str(out)]) == 0
  report = json.loads(out.read_text())
  e = report["ensemble"]
  assert len(e["member_clean_acc"]) == 2
  s = e["attack_success"]["moo_ens eps=0.1 steps=3"]
  assert s["A_all"] <= min(s["A_i"]) and report["n"] == 40
  assert "A-All" in capsys.readouterr().out
