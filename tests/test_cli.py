"""The command line end to end: list, train, evaluate, attack, quickstart, and bad input."""

import json

import numpy as np
import pytest

from jaxrobust.cli import main


def test_list(capsys):
  assert main(["list"]) == 0
  out = capsys.readouterr().out
  for word in ("pgd_at", "trades", "autoattack", "small_cnn", "digits", "quickstart_digits"):
    assert word in out


def test_list_keys(capsys):
  assert main(["list", "--keys"]) == 0
  out = capsys.readouterr().out
  for key in ("data.sampler", "train.init_from", "eval.ap_attacks", "method.name"):
    assert key in out


def test_list_attack_shows_every_option_with_its_default(capsys):
  assert main(["list", "--attack", "pgd"]) == 0
  out = capsys.readouterr().out
  for text in ("projected gradient descent", "linf, l2, l1", "    eps\n", "steps=10", "restart_select='loss'",
               "help(m.pgd)", "number of random restarts"):
    assert text in out
  assert main(["list", "--attack", "pdg"]) == 2
  assert "did you mean 'pgd'" in capsys.readouterr().err


def test_train_evaluate_attack_roundtrip(tmp_path, capsys):
  run = tmp_path / "run"
  assert main(["train", "--config", "quickstart_digits", "--output-dir", str(run), "--no-progress",
               "train.epochs=1", "data.train_subset=256", "method.name=pgd_at", "method.eps=0.2",
               "method.step_size=0.1", "method.steps=2", "train.tensorboard=true", "train.log_every_steps=2"]) == 0
  report = json.loads((run / "report.json").read_text())
  assert report["steps"] == 4 and 0.0 <= report["evaluation"]["clean_acc"] <= 1.0
  assert (run / "metrics.jsonl").exists() and (run / "config.json").exists()
  for _ in range(2):  # a second evaluation is a new record, not an overwrite
    assert main(["evaluate", "--run-dir", str(run), "--no-progress", "--max-examples", "64",
                 "--attack", "fgsm:eps=0.2,label=fgsm", "--seed", "5", "--no-compile-cache"]) == 0
  ev = json.loads((run / "evaluation.json").read_text())
  assert ev["n"] == 64 and ev["robust_acc"]["fgsm"] <= ev["clean_acc"]
  log = [json.loads(l) for l in (run / "evaluations.jsonl").read_text().splitlines()]
  assert [r["file"] for r in log] == ["report.json", "evaluation.json", "evaluation.json"]
  assert log[-1]["record_id"] == ev["record_id"] != log[-2]["record_id"]
  p = ev["provenance"]
  assert p["seed"] == 5 and p["points"]["n"] == 64 and p["versions"]["jax"] and p["checkpoint_step"] == 4
  assert (p["attacks"][0]["name"], p["attacks"][0]["eps"], p["attacks"][0]["label"]) == ("fgsm", 0.2, "fgsm")
  assert report["provenance"]["seed"] == report["config"]["seed"] + 1
  from jaxrobust.event_file import read_scalars
  events = [read_scalars(str(f)) for f in (run / "tensorboard").iterdir()]
  tags = {(step, tag) for e in events for step, tag, _ in e}
  assert {(2, "train/loss"), (4, "train/loss"), (4, "eval/clean_acc"), (4, "eval/robust_acc/PGD-20 eps=0.2"),
          (4, "evaluate/robust_acc/fgsm")} <= tags
  assert main(["evaluate", "--run-dir", str(run), "--no-progress", "--attack", "pgd:eps=0.2,step=3"]) == 2
  assert "did you mean 'steps'" in capsys.readouterr().err
  out = tmp_path / "adv.npz"
  assert main(["attack", "--run-dir", str(run), "--attack", "fgsm:eps=0.2", "--out", str(out),
               "--max-examples", "32", "--no-progress"]) == 0
  with np.load(out) as f:
    assert f["x_adv"].shape == (32, 8, 8, 1) and f["robust"].shape == (32,)
    assert f["x_adv"].min() >= 0 and f["x_adv"].max() <= 1
  capsys.readouterr()
  # --out without .npz: numpy appends it, and the printed path is the written one
  assert main(["attack", "--run-dir", str(run), "--attack", "fgsm:eps=0.2", "--out", str(tmp_path / "adv2"),
               "--max-examples", "32", "--no-progress"]) == 0
  assert capsys.readouterr().out.strip().endswith(f"-> {tmp_path / 'adv2.npz'}") and (tmp_path / "adv2.npz").exists()
  # an output that cannot be written fails before the evaluation
  (tmp_path / "blocker").write_text("a file, not a folder")
  assert main(["evaluate", "--run-dir", str(run), "--json", str(tmp_path / "blocker" / "e.json")]) == 2
  assert "cannot be created" in capsys.readouterr().err
  # another run's folder is refused (its config.json differs), unless --overwrite
  assert main(["train", "--config", "quickstart_digits", "--output-dir", str(run), "--no-progress",
               "optim.lr=0.01"]) == 2
  assert "holds another run" in capsys.readouterr().err


def test_train_method_flag_switches_the_method(tmp_path, capsys):
  run = tmp_path / "mart"
  assert main(["train", "--config", "quickstart_digits", "--method", "mart", "--output-dir", str(run),
               "--no-progress", "train.epochs=1", "data.train_subset=128", "method.steps=2",
               "method.beta=5.0", "eval.attacks=[]"]) == 0
  cfg = json.loads((run / "config.json").read_text())
  assert cfg["method"] == {"name": "mart", "steps": 2, "beta": 5.0}  # quickstart's method is 'standard'
  assert (run / "report.json").exists()


@pytest.mark.parametrize("method,extra", [("adr_trades", ["method.gb=0.5"]), ("ascl", ["method.strategy=hard"])])
def test_train_representation_methods_from_the_cli(tmp_path, method, extra):
  run = tmp_path / method
  assert main(["train", "--config", "quickstart_digits", "--method", method, "--output-dir", str(run),
               "--no-progress", "train.epochs=1", "data.train_subset=128", "method.steps=2",
               "eval.attacks=[]", *extra]) == 0
  records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
  key = "loss_gb" if method == "adr_trades" else "loss_scl"
  assert np.isfinite(records[-1][key])


def test_switch_method_keeps_only_the_threat_model():
  from jaxrobust.methods.registry import switch_method
  trades = {"name": "trades", "eps": 0.3, "step_size": 0.01, "steps": 40, "beta": 1.0}
  sec, dropped = switch_method(trades, "gairat")
  assert sec == {"name": "gairat", "eps": 0.3, "step_size": 0.01, "steps": 40} and dropped == ["beta"]
  assert switch_method(trades, "standard") == ({"name": "standard"}, ["beta", "eps", "step_size", "steps"])
  assert switch_method(trades, "TRADES") == (trades, [])
  with pytest.raises(ValueError, match="unknown method 'magic'"):
    switch_method(trades, "magic")


@pytest.mark.parametrize("argv,message", [
    (["train", "--config", "quickstart_digits", "--method", "magic"], "unknown method"),
    (["train", "--config", "nope"], "unknown config"),
    (["train", "--config", "quickstart_digits", "method.eps=-1"], "must be >= 0"),
    (["train", "--config", "quickstart_digits", "data.name=imagenet"], "unknown dataset"),
    (["train", "--config", "quickstart_digits", "method.name=magic"], "unknown method"),
    (["train", "--config", "quickstart_digits", "model.name=vgg"], "unknown model"),
    (["train", "--config", "quickstart_digits", "train.nope=1"], "unknown key"),
    (["train", "--config", "quickstart_digits", "train.epoch=1"], "did you mean train.epochs"),
    (["train", "--config", "quickstart_digits", "--method", "trades", "method.bta=1"], "did you mean method.beta"),
    (["train", "--config", "no/such/config.py"], "not found"),
    (["train", "--config", "quickstart_digits", "eval.attacks=[{'name': 'pgd', 'eps': 0.1, 'step': 3}]"],
     "has no parameter 'step' (did you mean 'steps'?)"),
    (["train", "--config", "quickstart_digits", "train.batch_size=64.5"], "train.batch_size must be an integer"),
    (["train", "--config", "quickstart_digits", "train.epochs="], "has no value: write train.epochs=VALUE"),
    (["train", "--config", "quickstart_digits", "method.name=pgd_at", "method.eps=abc"], "method.eps must be a number"),
    (["train", "--config", "quickstart_digits",
      "eval.attacks=[{'name': 'autoattack', 'eps': 0.1, 'attack_kwargs': {'apgdce': {}}}]"],
     "unknown AutoAttack component 'apgdce' (did you mean 'apgd-ce'?)"),
])
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
  assert main(argv + ["--output-dir", str(tmp_path / "r"), "--no-progress"]) == 2
  assert message in capsys.readouterr().err


def test_override_after_an_option_says_how_to_write_it(capsys):
  with pytest.raises(SystemExit):
    main(["train", "--config", "quickstart_digits", "train.epochs=1", "--no-progress", "train.batch_size=8"])
  assert "train.batch_size=8 come after an option's value; write every key=value override after the options" in \
      capsys.readouterr().err


def test_evaluate_rejects_non_run_dir(tmp_path):
  with pytest.raises(SystemExit, match="not a jaxrobust run directory"):
    main(["evaluate", "--run-dir", str(tmp_path)])


def test_evaluate_best_without_selection_is_a_clear_error(tmp_path):
  from jaxrobust.configs import load_config
  from jaxrobust.train.checkpoint import write_json
  write_json(str(tmp_path / "config.json"), load_config("quickstart_digits"))
  with pytest.raises(SystemExit, match="no checkpoint in"):
    main(["evaluate", "--run-dir", str(tmp_path)])
  with pytest.raises(SystemExit, match="has no selected checkpoint"):
    main(["evaluate", "--run-dir", str(tmp_path), "--best"])


def test_quickstart_runs_and_writes_report_and_plot(tmp_path, capsys):
  out = tmp_path / "qs"
  assert main(["quickstart", "--output-dir", str(out), "--epochs", "1", "--no-progress"]) == 0
  report = json.loads((out / "quickstart_report.json").read_text())
  assert set(report["results"]) == {"standard", "pgd_at"}
  assert (out / "robust_accuracy_vs_eps.png").stat().st_size > 1000
  for c in report["curves"].values():
    assert len(c["eps"]) == len(c["robust_acc"]) and c["robust_acc"][0] >= c["robust_acc"][-1]
    assert c["labels"] == [f"PGD-20 eps={e:g}" for e in c["eps"]]  # each point labelled with its own eps
  assert "| standard |" in capsys.readouterr().out
  # table and plot are one evaluation: the plotted point at the table's eps is the table's number
  from jaxrobust.quickstart import plot_curves
  drawn = plot_curves(report["curves"], str(tmp_path / "again.png"))
  for name, r in report["results"].items():
    eps, accs = drawn[name]
    assert accs[eps.index(0.2)] == pytest.approx(100 * r["robust_acc"]["PGD-20 eps=0.2"])
    assert f"| {name} | {100 * r['clean_acc']:.2f} | {accs[eps.index(0.2)]:.2f} |" in report["table"]
  assert report["provenance"]["seed"] == 1 and len(report["provenance"]["attacks"]) == len(drawn["standard"][0])


def test_evaluate_rdiv_writes_numbers_and_plot(tmp_path, capsys):
  run = tmp_path / "run"
  assert main(["train", "--config", "quickstart_digits", "--output-dir", str(run), "--no-progress",
               "train.epochs=1", "data.train_subset=128", "eval.attacks=[]"]) == 0
  assert main(["evaluate", "--run-dir", str(run), "--no-progress", "--no-checks", "--max-examples", "150",
               "--attack", "fgsm:eps=0.2,label=fgsm", "--rdiv", "--rdiv-pools", "adversarial"]) == 0
  assert "R-DIV [fgsm, adversarial pools]" in capsys.readouterr().out
  ev = json.loads((run / "evaluation.json").read_text())
  r = ev["r_div"]["fgsm"]
  assert r["n"] == 150 and r["pools"] == "adversarial" and r["ratio"] == pytest.approx(r["d_plus"] / r["d_minus"])
  assert r["plot"] == str(run / "evaluation_rdiv.png") and (run / "evaluation_rdiv.png").exists()
  assert "fgsm" in ev["robust_acc"]
  with pytest.raises(SystemExit, match="--rdiv compares clean and adversarial latents"):
    main(["evaluate", "--run-dir", str(run), "--no-progress", "--rdiv"])


@pytest.mark.slow  # ~1 min quiet (two trainings with per-epoch AP selection); run with -m slow
def test_adap_from_the_cli_selects_on_validation_ap_and_adds_the_transfer_column(tmp_path, shared_data):
  """AdAP's protocol end to end from `jaxrobust train`: the CE surrogate first, then AdAP_LPN with
  eval.transfer_from; both select their epoch on the validation split."""
  small = ["train.epochs=2", "data.train_subset=800", "data.test_subset=300", "train.batch_size=100",
           "model.hidden_sizes=(32,)", "--no-progress"]
  ce = tmp_path / "ce"
  assert main(["train", "--config", "adap_reduced", "--output-dir", str(ce), "--no-progress", "method.name=bce",
               "train.select_attack=None", *small[:-1]]) == 0
  assert main(["train", "--config", "adap_reduced", "--output-dir", str(tmp_path / "lpn"), "--no-progress",
               "method.steps=2", f"eval.transfer_from={ce}", *small[:-1]]) == 0
  report = json.loads((tmp_path / "lpn" / "report.json").read_text())
  assert report["selected"]["metric"] == "AP PGD-10"
  records = [json.loads(l) for l in (tmp_path / "lpn" / "selection.jsonl").read_text().splitlines()]
  assert [r["split"] for r in records] == ["val", "val"] and records[0]["n"] < 800  # the held-out 20 %
  ap = report["evaluation"]["average_precision"]
  assert set(ap["robust_ap"]) == {"PGD-10", "APGD-CE-10", "transfer PGD-20"}
  assert 0 <= ap["robust_ap"]["transfer PGD-20"] <= 1
  ce_report = json.loads((ce / "report.json").read_text())
  assert ce_report["selected"]["metric"] == "AP clean"
  with pytest.raises(SystemExit, match="not a jaxrobust run directory"):
    main(["train", "--config", "adap_reduced", "--output-dir", str(tmp_path / "x"), "--no-progress",
          f"eval.transfer_from={tmp_path / 'missing'}", *small[:-1]])


@pytest.mark.slow  # trains a run, then two AutoAttack evaluations
def test_evaluate_resume_keeps_and_reuses_the_autoattack_state(tmp_path, capsys):
  run = tmp_path / "run"
  assert main(["train", "--config", "quickstart_digits", "--output-dir", str(run), "--no-progress",
               "train.epochs=1", "data.train_subset=256", "eval.attacks=[]"]) == 0
  spec = "autoattack:eps=0.1,attacks=['apgd-ce'],attack_kwargs={'apgd-ce':{'n_iter':3}},label=aa"
  argv = ["evaluate", "--run-dir", str(run), "--no-progress", "--no-checks", "--max-examples", "32",
          "--attack", spec, "--resume"]
  assert main(argv) == 0
  states = sorted((run / "evaluation_autoattack_state").glob("autoattack_*.npz"))
  assert states
  first = json.loads((run / "evaluation.json").read_text())["robust_acc"]["aa"]
  stamps = [s.stat().st_mtime_ns for s in states]
  assert main(argv) == 0  # every batch's state is complete: read back, nothing re-run or re-written
  assert json.loads((run / "evaluation.json").read_text())["robust_acc"]["aa"] == first
  assert [s.stat().st_mtime_ns for s in states] == stamps
