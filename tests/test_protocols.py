"""The papers' evaluation protocols: every protocol is well formed, a run on other data is refused,
and one protocol runs end to end from the CLI on a small real-data run."""

import json

import pytest

from jaxrobust.attacks.registry import check_attack_config
from jaxrobust.cli import main
from jaxrobust.evaluate.specs import EVALUATOR_KEYS
from jaxrobust.configs.protocols import check_run_matches, get_protocol, paper_row, protocol_names


@pytest.mark.parametrize("name", protocol_names())
def test_protocol_is_well_formed(name):
  p = get_protocol(name)
  labels = [a["label"] for a in p.attacks]
  assert len(set(labels)) == len(labels)
  assert p.columns[0] == "clean"
  produced = set(labels) | {"clean"} | ({"R-DIV"} if p.r_div else set())
  produced |= {"A-All", "A-Avg"} if p.ensemble_success else set()
  produced |= {f"{label} {m}" for label in p.ensemble_success_each for m in ("A-All", "A-Avg")}
  produced |= {"T", "S11", "S10", "S01", "S00", "nT", "a_single"} if p.transferability else set()
  for column in p.columns:  # every column is produced, or declared missing
    assert column in produced or column in p.missing, (name, column)
  for row, values in p.reference.items():
    assert set(values) <= set(p.columns), (name, row)
    assert all(0 <= v <= (1 if p.metric == "ap" else 100) for k, v in values.items() if k != "R-DIV")
  for spec in p.attacks:
    check_attack_config(spec["name"], {k: v for k, v in spec.items() if k not in EVALUATOR_KEYS})
  for method, row in p.rows.items():
    assert (row({"name": method}) if callable(row) else row) in p.reference, (name, method)


def test_paper_values_and_rows():
  ascl = get_protocol("ascl_cifar10")
  assert ascl.reference["Leaked-ASCL"] == {"clean": 75.5, "PGD-250": 53.7, "mPGD-250": 41.0, "AA": 42.0, "R-DIV": 0.48}
  assert paper_row(ascl, {"name": "ascl", "strategy": "hard"}) == "ASCL (Hard)"
  assert paper_row(ascl, {"name": "standard"}) is None
  mail = get_protocol("mail_cifar10")
  assert mail.reference["MAIL-TRADES"]["AA"] == 50.03 and paper_row(mail, {"name": "mail_trades"}) == "MAIL-TRADES"
  assert get_protocol("udr_mnist").attacks[0]["eps"] == 0.3
  udr100 = get_protocol("udr_cifar100")
  assert udr100.dataset == "cifar100" and {a["eps"] for a in udr100.attacks} == {0.01}
  assert udr100.reference["UDR-PGD"] == {"clean": 73.5, "PGD-200": 45.1, "AA": 41.9, "B&B": 42.3}
  assert paper_row(udr100, {"name": "wrm"}) == "WRM" and udr100.reference["WRM"]["AA"] == 21.3
  p = get_protocol("tamoo_ens_cifar10")
  assert [a["weighting"] for a in p.attacks] == ["uniform", "minmax", "mgda", "tamoo"] and p.members == 4
  assert {(a["eps"], a["step_size"], a["steps"]) for a in p.attacks} == {(8 / 255, 2 / 255, 100)}
  assert p.reference["set D (R18, VGG16, GoogLeNet, EffNet-B0)"]["TA-MOO A-All"] == 38.01
  with pytest.raises(ValueError, match="did you mean 'ascl_cifar10'"):
    get_protocol("ascl_cifar1O")


def test_run_on_other_data_is_refused():
  with pytest.raises(ValueError, match="defined on 'cifar10'.*trained on 'mnist'"):
    check_run_matches(get_protocol("udr_cifar10"), {"data": {"name": "mnist"}})
  with pytest.raises(ValueError, match="binary"):
    check_run_matches(get_protocol("adap_cifar10"), {"data": {"name": "cifar10"}})


def test_protocol_from_the_cli_on_a_small_mnist_run(tmp_path, capsys, shared_data):
  run = tmp_path / "run"
  assert main(["train", "--config", "mnist_trades", "--output-dir", str(run), "--no-progress", "model.name=mlp",
               "model.hidden_sizes=(32,)", "model.head=cosine", "method.steps=2", "train.epochs=1", "data.train_subset=256",
               "data.test_subset=64", "eval.attacks=[]"]) == 0
  capsys.readouterr()
  assert main(["evaluate", "--run-dir", str(run), "--protocol", "spat_mnist", "--max-examples", "32",
               "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert "| paper: TRADES (this method) | 99.10 | 97.42 | 96.22 | 96.01 |" in out
  result = json.loads((run / "evaluation_spat_mnist.json").read_text())
  assert result["paper_row"] == "TRADES" and result["provenance"]["n"] == 32
  # a cosine head: 'clean' on SPAT's normalize=False logits, beside the model's own
  assert set(result["this_run"]) == {"clean", "clean (model logits)", "FGSM", "PGD-20", "CW-Linf"}
  assert all(0 <= v <= 100 for v in result["this_run"].values())
  assert (run / "evaluation_spat_mnist.md").exists()
  assert main(["evaluate", "--run-dir", str(run), "--protocol", "mail_cifar10", "--no-progress"]) != 0
  assert "defined on 'cifar10', but the run was trained on 'mnist'" in capsys.readouterr().err
  with pytest.raises(SystemExit, match="drop --attack"):
    main(["evaluate", "--run-dir", str(run), "--protocol", "spat_mnist", "--attack", "fgsm:eps=0.1"])


def test_ensemble_protocol_from_the_cli(tmp_path, capsys, shared_data):
  """TA-MOO-AT of a tiny 2-member ensemble on real CIFAR-10 from the CLI, then its protocol: the ensemble's PGD-20
  accuracy and its A-All / A-Avg beside the paper's."""
  run = tmp_path / "run"
  assert main(["train", "--config", "cifar10_tamoo_at", "--output-dir", str(run), "--no-progress", "model.name=mlp",
               "model.members=2", "model.hidden_sizes=(16,)", "method.steps=2", "train.epochs=1",
               "train.batch_size=32", "data.train_subset=64", "data.test_subset=16", "data.subset_seed=0",
               "data.augment=false",
               "eval.attacks=[]"]) == 0
  capsys.readouterr()
  assert main(["evaluate", "--run-dir", str(run), "--protocol", "tamoo_at_cifar10", "--max-examples", "16",
               "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert "| paper: MobiX3 TA-MOO-AT (this method) | 79.22 | 38.22 | 48.21 | 67.83 |" in out
  result = json.loads((run / "evaluation_tamoo_at_cifar10.json").read_text())
  r = result["this_run"]
  assert {"clean", "PGD-20", "A-All", "A-Avg", "A-1", "A-2"} <= set(r)
  assert r["A-All"] <= min(r["A-1"], r["A-2"]) <= r["A-Avg"] <= max(r["A-1"], r["A-2"])
  assert 100 - r["PGD-20"] >= r["A-All"]  # fooling every member fools the mean-probability ensemble


@pytest.mark.slow  # ~95 s on a loaded 2-core machine: two trainings and four 100-step attacks
def test_tamoo_ens_protocol_on_an_ensemble_of_runs_from_the_cli(tmp_path, capsys, shared_data):
  """The TA-MOO ENS table from the CLI on two tiny CIFAR-10 runs evaluated as one ensemble (the paper has 4 members):
  one A-All / A-Avg pair per weighting beside the paper's; one run alone is refused."""
  runs = []
  for seed in (0, 1):
    run = tmp_path / f"run{seed}"
    assert main(["train", "--config", "cifar10_pgd_at", "--output-dir", str(run), "--no-progress", "model.name=mlp",
                 "model.hidden_sizes=(16,)", "method.steps=1", "train.epochs=1", "train.batch_size=32",
                 f"seed={seed}", "data.train_subset=64", "data.test_subset=16", "data.subset_seed=0",
                 "data.augment=false", "eval.attacks=[]"]) == 0
    runs.append(str(run))
  capsys.readouterr()
  assert main(["evaluate", "--run-dir", runs[0], "--run-dir", runs[1], "--protocol", "tamoo_ens_cifar10",
               "--max-examples", "8", "--no-progress"]) == 0
  out = capsys.readouterr().out
  assert "| paper: set D (R18, VGG16, GoogLeNet, EffNet-B0) | - | 28.21 | 48.34 | 35.75 |" in out
  result = json.loads((tmp_path / "run0" / "ensemble_of_2_evaluation_tamoo_ens_cifar10.json").read_text())
  r = result["this_run"]
  for label in ("Uniform", "MinMax", "MOO", "TA-MOO"):
    assert 0 <= r[f"{label} A-All"] <= r[f"{label} A-Avg"] <= 100
  assert len(result["provenance"]["run_dirs"]) == 2
  assert main(["evaluate", "--run-dir", runs[0], "--protocol", "tamoo_ens_cifar10", "--no-progress"]) != 0
  assert "one run folder per member" in capsys.readouterr().err
