"""Declarative configs: every config loads, names resolve, overrides apply, paper values hold.

    . .venv/bin/activate && python -m pytest -q tests/test_configs.py

Nothing here trains or traces a model: configs are checked by building (not running) the method,
the model module and every evaluation attack, which is what catches a misspelt hyper-parameter
(the factories take keyword-only arguments) before a multi-hour GPU run does.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from jaxrobust.attacks.registry import attack_names, get_attack
from jaxrobust.configs import apply_overrides, config_names, load_config, validate_config
from jaxrobust.evaluate.robust import EVALUATOR_KEYS
from jaxrobust.methods.registry import get_method, method_names
from jaxrobust.models import MODEL_NAMES, get_model

NAMES = config_names()
PAPER_CONFIGS = ("cifar10_pgd_at", "cifar10_trades", "cifar10_mart", "cifar10_gairat", "cifar10_mail_at",
                 "cifar10_mail_trades", "cifar10_mail_mart", "cifar10_spat", "cifar10_awp_at",
                 "mnist_trades", "mnist_spat", "cifar10_udr", "cifar10_udr_awp_at", "mnist_udr", "cifar100_udr",
                 "mnist_adr", "cifar10_adr", "cifar10_adr_cnn", "cifar10_ascl", "cifar10_ascl_code", "cifar100_ascl",
                 "cifar10_cce", "cifar10_adv_en", "cifar10_adp", "mnist_cce")


def test_paper_configs_are_listed():
  missing = [n for n in PAPER_CONFIGS + ("fashion_mnist_reduced",) if n not in NAMES]
  assert not missing, f"config modules not found by config_names(): {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_config_loads_and_validates(name):
  cfg = load_config(name)
  validate_config(cfg)
  assert cfg["config_name"] == name
  for section in ("data", "model", "method", "optim", "train", "eval"):
    assert isinstance(cfg[section], dict)
  # Every module documents the command that runs it.
  import importlib
  doc = importlib.import_module(f"jaxrobust.configs.{name}").__doc__ or ""
  assert "jaxrobust train --config" in doc or name.startswith("quickstart"), f"{name}: docstring lacks the command"


@pytest.mark.parametrize("name", NAMES)
def test_config_names_resolve(name):
  cfg = load_config(name)
  method = dict(cfg["method"])
  assert method["name"] in method_names(), f"{name}: unknown method {method['name']!r}"
  # Building the method checks every hyper-parameter name (keyword-only factories).
  get_method(method.pop("name"), **method)
  model = dict(cfg["model"])
  assert model["name"] in MODEL_NAMES, f"{name}: unknown model {model['name']!r}"
  get_model(model.pop("name"), 10, **model)
  for spec in cfg["eval"]["attacks"]:
    assert spec["name"] in attack_names(), f"{name}: unknown attack {spec['name']!r}"
    get_attack(spec["name"], **{k: v for k, v in spec.items() if k not in EVALUATOR_KEYS})
  labels = [s.get("label", s["name"]) for s in cfg["eval"]["attacks"]]
  assert len(set(labels)) == len(labels), f"{name}: duplicate attack labels {labels}"


def test_override_applies():
  cfg = load_config("cifar10_trades", ["method.beta=3.0", "train.epochs=2", "optim.boundaries=(1,)",
                                       "data.train_subset=256", "model.head=cosine"])
  assert cfg["method"]["beta"] == 3.0
  assert cfg["train"]["epochs"] == 2
  assert cfg["optim"]["boundaries"] == (1,)
  assert cfg["data"]["train_subset"] == 256
  assert cfg["model"]["head"] == "cosine"
  # The module's own config is untouched (overrides work on a copy).
  assert load_config("cifar10_trades")["method"]["beta"] == 6.0


def test_override_adds_method_and_model_keys():
  # method/model are open sections: extra keys become factory kwargs.
  cfg = load_config("cifar10_mail_at", ["method.norm=paper", "model.width=32"])
  assert cfg["method"]["norm"] == "paper" and cfg["model"]["width"] == 32


@pytest.mark.parametrize("bad", ["optim.learning_rate=0.1",   # unknown key in a closed section
                                 "train.epoch=3",
                                 "optimizer.lr=0.1",           # unknown section
                                 "data.name.sub=1",            # a value is not a section
                                 "train.epochs"])              # no '='
def test_bad_override_errors(bad):
  with pytest.raises(ValueError):
    load_config("cifar10_trades", [bad])


def test_unknown_config_errors():
  with pytest.raises(ValueError, match="unknown config"):
    load_config("cifar10_tradez")


def test_invalid_values_error():
  with pytest.raises(ValueError):
    load_config("mnist_trades", ["train.epochs=0"])
  with pytest.raises(ValueError):
    load_config("mnist_trades", ["method.eps=-0.1"])
  with pytest.raises(ValueError):
    validate_config(apply_overrides(load_config("mnist_spat"), ["eval.attacks=[{'eps':0.3}]"]))


# ---------------------------------------------------------------------------------------------
# Paper protocols: the main hyper-parameters equal the spec's (../shared/spec).

def _attack(cfg, label):
  return next(a for a in cfg["eval"]["attacks"] if a.get("label") == label)


def _labels(cfg):
  return {a.get("label") for a in cfg["eval"]["attacks"]}


def test_cifar10_trades_protocol():
  c = load_config("cifar10_trades")
  assert c["model"]["name"] == "wrn34_10" and c["data"]["augment"]
  assert c["method"] == {"name": "trades", "eps": 0.031, "step_size": 0.007, "steps": 10, "beta": 6.0}
  o = c["optim"]
  assert (o["name"], o["lr"], o["momentum"], o["weight_decay"]) == ("sgd", 0.1, 0.9, 2e-4)
  assert c["train"]["epochs"] == 76 and c["train"]["batch_size"] == 128
  assert o["boundaries"] == (74,) and o["decay"] == 0.1  # x0.1 from 1-indexed epoch 75
  assert {"PGD-20", "AA"} <= _labels(c)
  assert _attack(c, "PGD-20")["step_size"] == 0.003


def test_cifar10_mart_protocol():
  c = load_config("cifar10_mart")
  assert c["model"]["name"] == "resnet18"
  m = c["method"]
  assert (m["name"], m["beta"], m["eps"], m["step_size"], m["steps"]) == ("mart", 5.0, 0.031, 0.007, 10)
  o = c["optim"]
  assert (o["lr"], o["weight_decay"], o["boundaries"]) == (0.01, 3.5e-3, (74, 89, 99))
  assert c["train"]["epochs"] == 120


def test_mail_aa_on_the_first_1000_points_variant():
  from jaxrobust.configs.cifar10_mail_at import mail_eval_attacks
  default = {s["label"]: s for s in mail_eval_attacks()}
  code = {s["label"]: s for s in mail_eval_attacks(aa_max_examples=1000)}
  assert "max_examples" not in default["AA"] and code["AA"]["max_examples"] == 1000
  assert all("max_examples" not in s for label, s in code.items() if label != "AA")
  get_attack("autoattack", **{k: v for k, v in code["AA"].items() if k not in EVALUATOR_KEYS})


def test_cifar10_mail_protocols():
  expect = {"cifar10_mail_at": ("mail_at", 10.0, -0.5, None),
            "cifar10_mail_trades": ("mail_trades", 2.0, 0.0, 5.0),
            "cifar10_mail_mart": ("mail_mart", 5.0, 0.05, 5.0)}
  for name, (method, slope, bias, beta) in expect.items():
    c = load_config(name)
    m = c["method"]
    assert (m["name"], m["slope"], m["bias"], m.get("beta")) == (method, slope, bias, beta), name
    assert (m["eps"], m["step_size"], m["steps"], m["burn_in_epochs"], m["norm"]) == (0.031, 0.007, 10, 76, "code")
    assert c["model"]["name"] == "resnet18" and c["data"]["augment"]
    o = c["optim"]
    assert (o["lr"], o["momentum"], o["weight_decay"], o["boundaries"]) == (0.01, 0.9, 3.5e-3, (75, 90, 100))
    assert c["train"]["epochs"] == 120 and c["train"]["batch_size"] == 128
    assert {"PGD-20", "PGD-100", "CW-Linf", "APGD-CE", "AA"} <= _labels(c)
    assert _attack(c, "PGD-100")["step_size"] == 0.003 and _attack(c, "CW-Linf")["kappa"] == 50.0


def test_cifar10_pgd_at_and_gairat_protocols():
  c = load_config("cifar10_pgd_at")
  m = c["method"]
  assert (m["name"], m["steps"], m["mix"], m["init"]) == ("pgd_at", 10, 1.0, "uniform")
  assert math.isclose(m["eps"], 8 / 255) and math.isclose(m["step_size"], 2 / 255)
  assert c["model"]["name"] == "resnet18"
  g = load_config("cifar10_gairat")
  m = g["method"]
  assert (m["name"], m["lam"], m["weight_fn"], m["begin_epoch"], m["steps"]) == ("gairat", -1.0, "tanh", 60, 10)
  assert m["epochs"] == g["train"]["epochs"] == 120
  assert (g["optim"]["lr"], g["optim"]["weight_decay"], g["optim"]["boundaries"]) == (0.1, 2e-4, (59, 89, 109))
  # GAIRAT.py's lr_schedule: 0.1, 0.01 from epoch 60, 0.001 from 90, 0.0005 from 110 (1-indexed).
  from jaxrobust.train.optim import make_schedule
  o = g["optim"]
  sched = make_schedule(lr=o["lr"], schedule=o["schedule"], steps_per_epoch=1, epochs=120,
                        boundaries=o["boundaries"], decay=o["decay"])
  lrs = [float(sched(e)) for e in (0, 58, 59, 88, 89, 108, 109, 119)]
  np.testing.assert_allclose(lrs, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0005, 0.0005], rtol=1e-6)


def test_cifar10_spat_protocol():
  c = load_config("cifar10_spat")
  assert c["model"] == {"name": "resnet18", "head": "cosine"}
  m = c["method"]
  assert (m["name"], m["s"], m["m"], m["n"], m["beta"]) == ("spat", 5.0, 0.2, 0.2, 6.0)
  assert (m["eps"], m["step_size"], m["steps"]) == (0.031, 0.007, 10)
  o = c["optim"]
  assert (o["lr"], o["weight_decay"], o["boundaries"]) == (0.1, 2e-4, (74, 89))
  assert c["train"]["epochs"] == 100
  assert {"FGSM", "PGD-20", "PGD-100", "MIM-20", "FAB", "CW-Linf", "AA"} <= _labels(c)
  assert math.isclose(_attack(c, "PGD-20")["step_size"], 0.8 / 255)


def test_cifar10_awp_at_protocol():
  c = load_config("cifar10_awp_at")
  m = c["method"]
  assert (m["name"], m["gamma"], m["proxy_lr"], m["warmup"]) == ("awp_at", 0.01, 0.01, 0)
  assert c["model"]["name"] == "wrn34_10"
  assert (c["optim"]["lr"], c["optim"]["weight_decay"], c["optim"]["boundaries"]) == (0.1, 5e-4, (100, 150))
  assert c["train"]["epochs"] == 200
  assert {"PGD-100", "AA", "CW-L2 c=0.5"} <= _labels(c)
  # UDR's code keeps the best test-PGD-20 epoch.
  t = c["train"]
  assert (t["select_best"], t["eval_every_epochs"]) == (True, 1)
  assert t["select_attack"] == _attack(c, "PGD-20")


def test_udr_protocols():
  """Spec C6/C7: ResNet-18 with MART's recipe, WRN-34-10 with AWP's, MNIST with beta 1; lambda 1 / 0.02 / 10."""
  c = load_config("cifar10_udr")
  m = c["method"]
  assert (m["name"], m["beta"], m["steps"], m["lam_init"], m["lam_lr"], m["lam_period"]) == (
      "udr_trades", 6.0, 10, 1.0, 0.02, 10)
  assert math.isclose(m["eps"], 8 / 255) and math.isclose(m["step_size"], 2 / 255)
  assert c["model"]["name"] == "resnet18" and c["data"]["augment"]
  assert (c["optim"]["lr"], c["optim"]["weight_decay"], c["optim"]["boundaries"]) == (0.01, 3.5e-3, (75, 90, 100))
  assert c["train"]["epochs"] == 200 and {"PGD-200", "AA"} <= _labels(c)
  assert _attack(c, "PGD-200")["steps"] == 200
  from jaxrobust.configs.cifar10_udr import udr_eval_attacks
  assert udr_eval_attacks(aa_max_examples=1000)[1]["max_examples"] == 1000
  w = load_config("cifar10_udr_awp_at")
  assert (w["method"]["name"], w["method"]["gamma"], w["method"]["lam_lr"]) == ("udr_awp_at", 0.01, 0.001)
  assert w["model"]["name"] == "wrn34_10" and w["train"]["select_best"]
  assert get_method(**w["method"]).hparams["natural"] == 0.0       # UDR-PGD*: no natural term
  n = load_config("mnist_udr")
  assert (n["method"]["name"], n["method"]["beta"], n["method"]["eps"], n["method"]["steps"]) == (
      "udr_trades", 1.0, 0.3, 40)
  assert n["model"]["name"] == "small_cnn" and "dropout_rate" not in n["model"]


def test_mnist_protocols():
  t = load_config("mnist_trades")
  assert t["data"]["name"] == "mnist" and not t["data"]["augment"]
  assert t["model"]["name"] == "small_cnn" and t["model"]["channels"] == (32, 64)
  assert t["method"] == {"name": "trades", "eps": 0.3, "step_size": 0.01, "steps": 40, "beta": 1.0}
  assert (t["optim"]["lr"], t["optim"]["momentum"], t["optim"]["boundaries"]) == (0.01, 0.9, (55, 75, 90))
  assert t["train"]["epochs"] == 100
  assert _attack(t, "PGD-40")["init"] == "none"
  s = load_config("mnist_spat")
  assert s["model"]["head"] == "cosine"
  m = s["method"]
  assert (m["name"], m["eps"], m["step_size"], m["steps"]) == ("spat", 0.3, 0.01, 40)
  assert (s["optim"]["lr"], s["train"]["epochs"]) == (0.01, 80)


def test_representation_protocols():
  """ADR / ASCL spec 2.3-2.6 and 3.4-3.7: thesis settings by default, the released code's as a config."""
  a = load_config("mnist_adr")
  m = a["method"]
  assert (m["name"], m["eps"], m["step_size"], m["steps"], m["lc"], m["gb"], m["smt"], m["conf"]) == (
      "adr_adv", 0.3, 0.01, 20, 1.0, 1.0, 1.0, 0.0)
  assert {"PGD-40 eps=0.3", "mPGD-40 eps=0.3", "mPGD-40 eps=0.325"} <= _labels(a)
  c = load_config("cifar10_adr")
  assert c["model"]["name"] == "resnet20" and (c["method"]["eps"], c["method"]["step_size"]) == (0.031, 0.007)
  assert (c["optim"]["lr"], c["optim"]["weight_decay"], c["optim"]["boundaries"]) == (0.1, 2e-4, (100, 150))
  assert {"PGD-20", "mPGD-20", "AA"} <= _labels(c)
  n = load_config("cifar10_adr_cnn")
  assert n["model"]["channels"] == (64, 128) and n["method"]["conf"] == 1.0 and n["optim"]["name"] == "adam"
  t = load_config("cifar10_ascl")
  h = get_method(**t["method"]).hparams
  assert (h["strategy"], h["tau"], h["lambda_scl"], h["lambda_vat"], h["distance"], h["alpha"]) == (
      "leaked", 0.07, 1.0, 2.0, "cosine", 1.0)
  assert h["counterpart_always_positive"] and h["vat_reduction"] == "batchmean"
  assert t["optim"]["boundaries"] == (80, 120, 160) and _attack(t, "PGD-250")["steps"] == 250
  assert _attack(t, "AA")["max_examples"] == 1000 and "mPGD-250" in _labels(t)
  k = get_method(**load_config("cifar10_ascl_code")["method"]).hparams
  assert (k["alpha"], k["tau"], k["distance"], k["normalize"], k["vat_reduction"], k["attack_bn"]) == (
      0.0, 0.2, "linf", True, "elementmean", "train")
  assert not k["counterpart_always_positive"]
  h100 = load_config("cifar100_ascl")
  assert h100["data"]["name"] == "cifar100" and h100["method"]["eps"] == 0.01 and _attack(h100, "PGD-250")["eps"] == 0.01
  switched = load_config("cifar10_adr", ["method.name=adr_trades"])
  assert get_method(**switched["method"]).name == "adr_trades"


def test_cce_protocol():
  """CCE spec A4: Adam 1e-3 x0.1 after 80/120/160 (Keras epoch > 80), 180 epochs, batch 64, two members,
  PGD-10; the CNN members (Table 4) train at eps 8/255 step 2/255, ResNet members (Table 3) with the ADP setting
  eps ~ U(0.01, 0.05); the baselines share it; the evaluation is the cce_cifar10 protocol's."""
  c = load_config("cifar10_cce")
  h = get_method(**c["method"]).hparams
  assert (h["lambda_pm"], h["lambda_dm"], h["w_ce"], h["stop_gradient_s"], h["code_faithful_terms"]) == (
      1.0, 1.0, 1.0, True, False)
  assert c["model"]["name"] == "cce_cnn_cifar10" and (h["eps"], h["step_size"], h["steps"]) == (8 / 255, 2 / 255, 10)
  from jaxrobust.configs.protocols import get_protocol
  assert [a["label"] for a in c["eval"]["attacks"]] == [a["label"] for a in get_protocol("cce_cifar10").attacks]
  assert c["model"]["members"] == 2 and c["optim"]["name"] == "adam" and c["optim"]["lr"] == 1e-3
  assert c["optim"]["boundaries"] == (81, 121, 161) and (c["train"]["epochs"], c["train"]["batch_size"]) == (180, 64)
  assert _attack(c, "PGD k100")["steps"] == 100 and _attack(c, "AutoAttack")["max_examples"] == 1000
  for name, method in (("cifar10_adv_en", "adv_en"), ("cifar10_adp", "adp")):
    b = load_config(name)
    assert b["method"]["name"] == method and b["optim"] == c["optim"] and b["model"] == c["model"]
    assert b["method"]["eps"] == 8 / 255
  assert get_method(**load_config("cifar10_adp")["method"]).hparams["alpha"] == 2.0
  dm = get_method(**load_config("cifar10_cce", ["method.mode=dm"])["method"]).hparams
  assert (dm["lambda_pm"], dm["lambda_dm"], dm["w_ce"]) == (0.0, 5.0, 0.0)
  assert load_config("mnist_cce")["model"]["members"] == 2


def test_adap_protocol_selects_on_validation_robust_ap():
  c = load_config("adap_cifar10")
  t = c["train"]
  assert (t["select_best"], t["select_split"], t["select_metric"], t["eval_every_epochs"]) == (True, "val", "ap", 1)
  assert t["select_attack"]["label"] == "PGD-10" and c["eval"]["transfer_from"] is None
  with pytest.raises(ValueError, match="validation split"):
    load_config("mnist_trades", ["train.select_best=True", "train.eval_every_epochs=1", "train.select_split=val"])
  with pytest.raises(ValueError, match="select_metric"):
    load_config("adap_cifar10", ["train.select_metric=auc"])


def test_reduced_config_is_small():
  c = load_config("fashion_mnist_reduced")
  assert c["data"]["name"] == "fashion_mnist" and c["data"]["train_subset"] <= 10_000
  assert c["train"]["epochs"] <= 5


# ---------------------------------------------------------------------------------------------
# The declared contract: every key has a meaning, unknown keys are refused with the nearest one.

@pytest.mark.parametrize("name", NAMES)
def test_every_config_key_is_declared(name):
  from jaxrobust.configs.base import KEYS, OPEN_SECTIONS
  cfg = load_config(name)
  for section in ("data", "optim", "train", "eval"):
    assert section not in OPEN_SECTIONS
    for k in cfg[section]:
      assert f"{section}.{k}" in KEYS, f"{name}: {section}.{k} is not declared in configs/base.py"


def test_every_key_read_by_the_library_is_declared():
  """Grep the package for section.get('key') / section['key'] reads of config sections."""
  import pathlib
  import re
  from jaxrobust.configs.base import KEYS
  root = pathlib.Path(__file__).resolve().parents[1] / "jaxrobust"
  reads = set()
  pattern = re.compile(r"cfg\[\"(data|optim|train|eval)\"\](?:\.get\(|\[)\"(\w+)\"")
  for path in root.rglob("*.py"):
    for section, key in pattern.findall(path.read_text()):
      reads.add(f"{section}.{key}")
  for key in ("data.sampler", "data.pos_num", "data.binary_task", "data.binary_positive_class",
              "data.val_fraction", "data.split_seed", "train.init_from", "train.init_reinit_head",
              "eval.ap_attacks", "eval.eps_grid"):
    reads.add(key)
  assert reads and not sorted(reads - set(KEYS))


@pytest.mark.parametrize("override,message", [
    ("method.bta=6", "did you mean method.beta"),
    ("train.epoch=3", "did you mean train.epochs"),
    ("optimizer.lr=0.1", "did you mean optim.lr"),
    ("model.widht=2", "did you mean model.width"),
    ("eval.atacks=[]", "did you mean eval.attacks"),
    ("optim.learning_rate=0.1", "valid keys: optim.boundaries"),
])
def test_unknown_key_names_the_nearest(override, message):
  name = "cifar10_mart" if override.startswith("model.") else "cifar10_trades"
  with pytest.raises(ValueError, match=message):
    load_config(name, [override])


def test_forwarded_method_keys_are_checked():
  # adap_lpn's factory forwards **kw: the key is checked where it lands.
  with pytest.raises(ValueError, match="did you mean method.lam"):
    load_config("adap_reduced", ["method.lamda=1"])
  assert load_config("adap_reduced", ["method.lam=1.5"])["method"]["lam"] == 1.5


def test_declared_optional_keys_can_be_set():
  cfg = load_config("quickstart_digits", ["data.sampler=shuffle", "train.init_from=None"])
  assert cfg["data"]["sampler"] == "shuffle" and cfg["train"]["init_from"] is None


def test_validate_config_refuses_a_hand_built_unknown_key():
  cfg = load_config("mnist_trades")
  cfg["eval"]["transfer_form"] = "runs/ce"
  with pytest.raises(ValueError, match="unknown key 'eval.transfer_form'"):
    validate_config(cfg)


def test_user_config_file(tmp_path):
  path = tmp_path / "my_protocol.py"
  path.write_text("from jaxrobust.configs.base import base_config\n\n"
                  "def get_config():\n  cfg = base_config()\n  cfg['method'] = {'name': 'trades', 'beta': 3.0}\n"
                  "  return cfg\n")
  cfg = load_config(str(path), ["train.epochs=2"])
  assert cfg["method"]["beta"] == 3.0 and cfg["train"]["epochs"] == 2 and cfg["config_name"] == str(path)
  with pytest.raises(FileNotFoundError, match="not found"):
    load_config(str(tmp_path / "missing.py"))
  (tmp_path / "empty.py").write_text("X = 1\n")
  with pytest.raises(ValueError, match="defines no get_config"):
    load_config(str(tmp_path / "empty.py"))


def test_switching_the_model_drops_the_old_models_keys_with_a_warning():
  with pytest.warns(UserWarning, match=r"dropped model keys \['conv_padding'\]"):
    cfg = load_config("quickstart_digits", ["model.name=resnet20"])
  assert cfg["model"] == {"name": "resnet20", "head": "linear"}
  with pytest.raises(ValueError, match="did you mean model.conv_padding"):
    load_config("quickstart_digits", ["model.conv_paddin=1"])


def test_adp_with_sgd_warns_and_with_adam_does_not():
  with pytest.warns(UserWarning, match="optim.name=adam"):
    load_config("quickstart_digits", ["model.members=2", "method.name=adp", "optim.name=sgd"])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    load_config("cifar10_adp")
