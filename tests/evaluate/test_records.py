"""Evaluation records: never overwritten, full provenance, RobustBench-style summary; the progress texts."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrobust.cli import main
from jaxrobust.data import load_dataset
from jaxrobust.evaluate import records
from jaxrobust.evaluate.robust import RobustEvaluator, eps_label, progress_postfix, stage_text


def test_a_second_record_is_appended_and_the_file_holds_the_latest(tmp_path):
  path = str(tmp_path / "evaluation.json")
  first = records.write_record(path, {"clean_acc": 0.5})
  second = records.write_record(path, {"clean_acc": 0.7})
  log = records.read_records(str(tmp_path))
  assert [r["clean_acc"] for r in log] == [0.5, 0.7]
  assert [r["record_id"] for r in log] == [first["record_id"], second["record_id"]]
  assert first["record_id"] != second["record_id"] and {r["file"] for r in log} == {"evaluation.json"}
  assert json.loads((tmp_path / "evaluation.json").read_text())["clean_acc"] == 0.7
  assert records.read_records(str(tmp_path / "nothing")) == []


def test_provenance_names_versions_points_and_every_attack_option():
  test = load_dataset("digits", "test")
  aa = {"name": "autoattack", "eps": 0.1, "label": "AA"}  # version not given: recorded anyway
  p = records.provenance(seed=3, dataset=test, n=100, attacks=[aa, {"name": "pgd", "eps": 0.1}],
                         key=jax.random.PRNGKey(3), run_dir="somewhere")
  assert p["seed"] == 3 and p["key"] == np.asarray(jax.random.PRNGKey(3)).tolist() and p["run_dir"] == "somewhere"
  for package in ("jaxrobust", "jax", "jaxlib", "flax", "optax", "numpy"):
    assert p["versions"][package], package
  assert p["git"] is None or set(p["git"]) == {"commit", "dirty"}
  assert p["points"]["n"] == 100 and p["points"]["of"] == len(test) and p["points"]["selection"] == "first 100 in split order"
  assert p["points"]["sha256"] == records.points_digest(test, 100) != records.points_digest(test, 99)
  assert p["attacks"][0]["version"] == "standard" and p["attacks"][0]["norm"] == "linf" and p["attacks"][0]["label"] == "AA"
  assert p["attacks"][1]["steps"] == 10 and p["attacks"][1]["eps"] == 0.1  # pgd's default steps, the given eps
  json.dumps(p)  # a record is plain JSON


def test_robustbench_summary_of_the_newest_autoattack_record(tmp_path):
  config = {"model": {"name": "wide_resnet", "depth": 28, "width": 10}, "data": {"name": "cifar10"},
            "output_dir": "runs/x"}
  old = {"clean_acc": 0.80, "robust_acc": {"AA": 0.40}, "n": 1000,
         "attacks": [{"name": "autoattack", "eps": 8 / 255, "label": "AA"}]}
  new = {"clean_acc": 0.85, "robust_acc": {"AA": 0.50, "pgd": 0.55}, "n": 1000, "n_attacked": {"AA": 500},
         "attacks": [{"name": "autoattack", "eps": 8 / 255, "label": "AA"}, {"name": "pgd", "eps": 0.03, "label": "pgd"}],
         "provenance": {"attacks": [{"name": "autoattack", "eps": 8 / 255, "label": "AA", "norm": "linf",
                                     "version": "standard"}]}}
  pgd_only = {"clean_acc": 0.9, "robust_acc": {"pgd": 0.5}, "attacks": [{"name": "pgd", "eps": 0.03, "label": "pgd"}]}
  for r in (old, new, pgd_only):
    records.write_record(str(tmp_path / "evaluation.json"), r)
  s = records.robustbench_summary(records.read_records(str(tmp_path)), config)
  assert (s["clean_acc"], s["autoattack_acc"], s["eps"], s["threat_model"]) == ("85.00", "50.00", "8/255", "Linf")
  assert s["n_points"] == 500 and s["dataset"] == "cifar10" and s["architecture"] == "wide_resnet depth=28 width=10"
  assert s["jaxrobust"]["attack"]["version"] == "standard"
  with pytest.raises(ValueError, match="no AutoAttack evaluation recorded.*--attack autoattack:eps="):
    records.robustbench_summary([{"clean_acc": 0.9, "robust_acc": {}, "attacks": []}], config)
  assert records.eps_text(0.5) == "0.5" and records.eps_text(4 / 255) == "4/255"

  (tmp_path / "config.json").write_text(json.dumps(config))
  assert main(["export-summary", str(tmp_path), "--out", str(tmp_path / "s.json"), "--name", "mine"]) == 0
  assert json.loads((tmp_path / "s.json").read_text())["name"] == "mine"
  with pytest.raises(SystemExit, match="not a jaxrobust run directory"):
    main(["export-summary", str(tmp_path / "nothing")])


def test_autoattack_stage_and_still_robust_count_on_the_progress_bar():
  from jaxrobust.attacks.autoattack import AutoAttackState
  state = AutoAttackState(robust=jnp.asarray([True, False, True, False]), x_adv=jnp.zeros((4, 2)),
                          fooled_by=jnp.zeros((4, 4), bool), clean_correct=jnp.ones(4, bool),
                          stage=jnp.asarray(1, jnp.int32), attacks=("apgd-ce", "apgd-t", "fab-t", "square"), norm="linf")
  assert stage_text(state) == "apgd-ce done 1/4, 2/4 still robust, next apgd-t"
  assert stage_text(state.replace(stage=jnp.asarray(4, jnp.int32))) == "square done 4/4, 2/4 still robust"
  postfix = progress_postfix({"clean": 9, "PGD-20 eps=0.031 long label": 4, "fgsm": 0}, {"PGD-20 eps=0.031 long label": 8,
                             "fgsm": 0}, ["PGD-20 eps=0.031 long label", "fgsm"], 10)
  assert postfix == {"clean": "0.900", "PGD-20 eps=0.031 long label": "0.500"}  # full labels, unseen attacks left out


def test_the_evaluate_bar_counts_points_of_every_stage(capsys):
  test = load_dataset("digits", "test").take(30)
  apply = lambda v, x: x.reshape(x.shape[0], -1) @ v  # noqa: E731
  ev = RobustEvaluator(apply)
  ev.evaluate(jnp.zeros((64, 10)), test, [{"name": "fgsm", "eps": 0.1, "label": "fgsm one"},
                                          {"name": "fgsm", "eps": 0.2, "label": "fgsm two", "max_examples": 10}],
              batch_size=16, progress=True)
  err = capsys.readouterr().err
  assert "70/70" in err and "evaluate fgsm two" in err and "point" in err  # 30 clean + 30 + 10 attacked


def test_curve_points_are_labelled_with_their_own_eps():
  assert eps_label({"name": "pgd", "label": "PGD-20 eps=0.2", "eps": 0.2}, 0.05) == "PGD-20 eps=0.05"
  assert eps_label({"name": "pgd", "eps": 0.2}, 0.1) == "pgd eps=0.1"
  assert eps_label({"name": "pgd", "label": "strong"}, 0.3) == "strong eps=0.3"
