"""Benchmark harness smoke tests (tiny shapes, JAX only) and parity of the PyTorch twins.

No timing assertions: the numbers depend on the machine; only the schema and the
equivalence of the two implementations are checked.
"""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import harness, rows
from benchmarks import torch_models as tm
from benchmarks import torch_steps as ts
from jaxrobust import models
from jaxrobust.attacks.pgd import pgd


def _check_timed_variant(v, repeats):
  assert "error" not in v, v.get("error")
  assert len(v["times_s"]) == repeats
  assert 0 < v["min_s"] <= v["median_s"] <= v["max_s"]
  assert v["q25_s"] <= v["median_s"] <= v["q75_s"]
  assert v["items_per_s"] > 0 and v["items_per_s_min"] <= v["items_per_s"] <= v["items_per_s_max"]


def test_quick_run_writes_json_and_markdown(tmp_path):
  out, md = tmp_path / "bench.json", tmp_path / "bench.md"
  argv = ["--quick", "--no-torch", "--rows", "pgd:small_cnn,memory:small_cnn", "--repeats", "2",
          "--json", str(out), "--markdown", str(md), "--quiet"]
  assert harness.main(argv) == 0
  report = json.loads(out.read_text())

  assert report["schema"] == harness.SCHEMA
  assert report["command"] == "python -m benchmarks.harness " + " ".join(argv)
  assert report["errors"] == []
  machine = report["machine"]
  for key in ("cpu_model", "cpu_count", "jax", "jaxlib", "jax_backend", "date_utc", "threads"):
    assert key in machine
  assert len(report["load_average_start"]) == 3 and len(report["load_average_end"]) == 3
  assert report["settings"]["torch"] is False and report["settings"]["batch_size"] == 8
  assert [r["id"] for r in report["rows"]] == ["pgd:small_cnn", "memory:small_cnn"]

  row = report["rows"][0]
  assert row["kind"] == "pgd" and row["batch_size"] == 8 and row["steps"] == 2
  assert [v["name"] for v in row["variants"]] == ["jax", "jax_unrolled", "jax_whole_batch"]
  assert [v["unroll"] for v in row["variants"]] == [1, True, 1]
  assert row["variants"][2]["microbatch"] is None
  for v in row["variants"]:
    _check_timed_variant(v, repeats=2)
    assert v["framework"] == "jax"
    assert v["lower_s"] > 0 and v["compile_s"] > 0
    assert v["memory"]["peak_estimate_bytes"] > 0
  assert row["speedup_vs_torch_eager"] == {} and row["logits_max_abs_diff_jax_torch"] is None

  mem = report["rows"][1]
  assert set(mem["programs"]) == {"fwd_bwd_input", "fwd_bwd_params", "pgd2", "pgd2_unrolled",
                                  "pgd2_whole_batch"}
  assert mem["ratio_vs_fwd_bwd_input"]["fwd_bwd_input"]["peak_estimate"] == pytest.approx(1.0)
  for p in mem["programs"].values():
    assert p["memory"]["temp_size_in_bytes"] >= 0

  text = md.read_text()
  assert text.startswith("```\npython -m benchmarks.harness --quick")
  assert "| PGD-2 Linf | SmallCNN 28x28x1 | 8 | jax |" in text
  assert "fwd_bwd_input" in text


@pytest.mark.slow
def test_quick_curves(tmp_path):
  out = tmp_path / "curves.json"
  assert harness.main(["--quick", "--no-torch", "--rows", "none", "--curves", "--repeats", "1",
                         "--json", str(out), "--quiet"]) == 0
  curves = json.loads(out.read_text())["curves"]
  for name, variants in (("batch", ["jax"]), ("steps", ["jax"]),
                         ("eps", ["jax_vmap", "jax_loop"]), ("members", ["jax_vmap", "jax_loop"])):
    assert [p["x"] for p in curves[name]["points"]] == ([4, 8] if name == "batch" else [1, 2])
    for p in curves[name]["points"]:
      assert [v["name"] for v in p["variants"]] == variants
      for v in p["variants"]:
        _check_timed_variant(v, repeats=1)


def test_row_selection():
  assert harness.select_rows("all") == harness.row_ids()
  assert harness.select_rows("none") == []
  assert harness.select_rows("small_cnn") == ["pgd:small_cnn", "pgd_at:small_cnn", "trades:small_cnn",
                                                "memory:small_cnn"]
  assert harness.select_rows("train") == ["pgd_at:small_cnn", "pgd_at:preact_resnet18", "trades:small_cnn",
                                            "trades:preact_resnet18"]
  assert harness.select_rows("memory:*,pgd:preact_resnet18") == ["pgd:preact_resnet18", "memory:small_cnn",
                                                                   "memory:preact_resnet18"]
  with pytest.raises(ValueError, match="matches no row"):
    harness.select_rows("pgd:vgg")
  # the opt-in representation rows: only when their kind is named
  assert harness.select_rows("trades:small_cnn,adr_trades:small_cnn,ascl:small_cnn") == [
      "trades:small_cnn", "adr_trades:small_cnn", "ascl:small_cnn"]
  assert harness.select_rows("ascl") == ["ascl:small_cnn", "ascl:preact_resnet18"]
  assert harness.select_rows("adr_trades:*") == ["adr_trades:small_cnn", "adr_trades:preact_resnet18"]
  assert harness.select_rows("*:small_cnn") == harness.select_rows("small_cnn")


def test_quick_representation_rows(tmp_path):
  out = tmp_path / "repr.json"
  argv = ["--quick", "--no-torch", "--rows", "adr_trades:small_cnn,ascl:small_cnn", "--repeats", "1",
          "--json", str(out), "--quiet"]
  assert harness.main(argv) == 0
  report = json.loads(out.read_text())
  assert [r["id"] for r in report["rows"]] == ["adr_trades:small_cnn", "ascl:small_cnn"]
  adr_row, ascl_row = report["rows"]
  assert adr_row["method_hparams"]["lc"] == 1.0 and adr_row["method_hparams"]["beta"] == 1.0
  assert ascl_row["method_hparams"]["strategy"] == "leaked" and ascl_row["method_hparams"]["tau"] == 0.07
  for row in report["rows"]:
    assert [v["name"] for v in row["variants"]] == ["jax"]
    _check_timed_variant(row["variants"][0], repeats=1)


def test_bad_arguments_exit_with_usage_error():
  with pytest.raises(SystemExit) as e:
    harness.main(["--rows", "nonsense", "--no-torch"])
  assert e.value.code == 2


# ----------------------------------------------------------------------------------------
# PyTorch twins (need the [torch] extra)
# ----------------------------------------------------------------------------------------

def _twins(name, shape, **kwargs):
  mean, std = (0.5,) * shape[2], (0.25,) * shape[2]
  module = models.get_model(name, mean=mean, std=std, **kwargs)
  # jit: eager init/apply of a ResNet dispatches (and compiles) op by op, which is slow.
  variables = jax.jit(lambda key: models.init_model(module, key, shape))(jax.random.key(0))
  if "batch_stats" in variables:  # non-trivial running statistics, so eval-mode BN is exercised
    rng = np.random.default_rng(1)
    variables["batch_stats"] = jax.tree.map(
        lambda a: (a + 0.3 * rng.random(a.shape)).astype(np.float32), variables["batch_stats"])
  net = tm.build_torch_model(name, shape, mean=mean, std=std, **kwargs)
  return module, variables, tm.port_flax_to_torch(variables, net).eval()


@pytest.mark.torch
@pytest.mark.parametrize("name,shape,kwargs", [("small_cnn", (28, 28, 1), {}),
                                               ("preact_resnet18", (32, 32, 3), {"width": 8})])
def test_ported_torch_twin_gives_the_same_logits(name, shape, kwargs):
  torch = pytest.importorskip("torch")
  module, variables, net = _twins(name, shape, **kwargs)
  x = np.random.default_rng(2).random((4,) + shape, dtype=np.float32)
  with torch.no_grad():
    theirs = net(tm.to_torch_images(x)).numpy()
    theirs_logits, theirs_features = net(tm.to_torch_images(x), return_features=True)
  np.testing.assert_allclose(jax.jit(models.make_apply(module))(variables, x), theirs, rtol=1e-4, atol=1e-5)
  ours = jax.jit(models.make_features_apply(module))(variables, x)
  np.testing.assert_allclose(ours.features, theirs_features.numpy(), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(ours.logits, theirs_logits.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.torch
def test_port_rejects_a_mismatched_torch_model():
  pytest.importorskip("torch")
  module = models.get_model("small_cnn")
  variables = jax.jit(lambda key: models.init_model(module, key, (28, 28, 1)))(jax.random.key(0))
  with pytest.raises(ValueError, match="shape mismatch"):  # fc1 sees a 5x5 map from 32x32 inputs
    tm.port_flax_to_torch(variables, tm.build_torch_model("small_cnn", (32, 32, 1)))
  with pytest.raises(ValueError, match="shape mismatch|no Flax counterpart"):  # another network
    tm.port_flax_to_torch(variables, tm.build_torch_model("preact_resnet18", (32, 32, 3), width=8))


@pytest.mark.torch
def test_one_pgd_step_from_the_clean_point_matches_torch():
  torch = pytest.importorskip("torch")
  module, variables, net = _twins("small_cnn", (28, 28, 1))
  rng = np.random.default_rng(3)
  x = rng.random((16, 28, 28, 1), dtype=np.float32)
  y = rng.integers(0, 10, 16).astype(np.int32)
  apply = models.make_apply(module)
  ours = np.asarray(pgd(lambda xx: apply(variables, xx), x, y, None, eps=0.1, step_size=0.05, steps=1,
                        init="none"))
  theirs = tm.to_numpy_images(ts.pgd_linf(net, tm.to_torch_images(x), torch.from_numpy(y.astype(np.int64)),
                                          eps=0.1, step_size=0.05, steps=1, random_start=False))
  # A pixel whose gradient is ~0 may take the other sign in one framework (2 * step apart); such
  # pixels must be rare, and every other pixel must agree to float precision.
  close = np.abs(ours - theirs) <= 1e-6
  assert close.mean() > 0.999
  moved = np.abs(ours - x) > 1e-6
  assert moved.mean() > 0.5  # the step did something


@pytest.mark.torch
def test_torch_train_steps_run_and_return_finite_losses():
  torch = pytest.importorskip("torch")
  _, _, net = _twins("small_cnn", (28, 28, 1))
  opt = ts.make_sgd(net)
  x = tm.to_torch_images(np.random.default_rng(4).random((4, 28, 28, 1), dtype=np.float32))
  y = torch.tensor([0, 1, 2, 3])
  before = [p.detach().clone() for p in net.parameters()]
  for step in (ts.pgd_at_step, ts.trades_step, ts.adr_trades_step, ts.ascl_step):
    loss = step(net, opt, x, y, eps=8 / 255, step_size=2 / 255, steps=2)
    assert np.isfinite(float(loss))
  assert net.training  # the update ran in train mode
  assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_missing_torch_message_names_the_pip_command(monkeypatch):
  import builtins
  real_import = builtins.__import__

  def fake_import(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
      raise ImportError("No module named 'torch'")
    return real_import(name, *args, **kwargs)
  monkeypatch.setattr(builtins, "__import__", fake_import)
  with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
    tm.require_torch()


@pytest.mark.torch
def test_torch_compile_variants_are_built_for_pgd_and_train_rows():
  """--torch-compile adds a compiled-network variant to the train rows too (built, not run:
  inductor takes 15-60 s per model; the benchmark itself times it)."""
  torch = pytest.importorskip("torch")
  cfg = {"quick": True, "seed": 0, "warmup": 1, "torch_compile": True}
  bench = rows.Bench(cfg, torch, lambda *a: None)
  for kind in ("pgd_at", "trades", "adr_trades", "ascl"):
    v = rows.torch_train_variant(bench, kind, "small_cnn", 4, 1, compile_model=True)
    assert v.name == "torch_compile" and v.info["torch_compile"] is True and v.warmup >= 2
    eager = rows.torch_train_variant(bench, kind, "small_cnn", 4, 1)
    assert eager.name == "torch_eager" and eager.info["torch_compile"] is False and eager.warmup is None
  v = rows.torch_pgd_variant(bench, "torch_compile", "small_cnn", 4, 1, compile_model=True)
  assert v.info["torch_compile"] is True and v.warmup >= 2


@pytest.mark.slow  # two subprocess runs of the script (~25 s); the evaluator's 1-vs-8 test stays in the default run
def test_device_scaling_script_shards_over_simulated_devices(tmp_path):
  """benchmarks/device_scaling.py: one process per device count, batch split N ways."""
  import pathlib
  import subprocess
  import sys
  root = pathlib.Path(__file__).parents[1]
  script = [sys.executable, "-m", "benchmarks.device_scaling"]
  r = subprocess.run(script + ["--devices", "1,2", "--batch-size", "8", "--steps", "1",
                      "--repeats", "1", "--out", str(tmp_path)], capture_output=True, text=True, check=False,
                     cwd=root)
  assert r.returncode == 0, r.stderr[-2000:]
  report = json.loads((tmp_path / "device_scaling.json").read_text())
  assert [run["num_devices"] for run in report["runs"]] == [1, 2]
  assert [run["batch_shards"] for run in report["runs"]] == [1, 2]
  for run in report["runs"]:
    for prog in ("pgd", "pgd_at_step"):
      assert run[prog]["median_s"] > 0 and run[prog]["compile_s"] > 0
  assert (tmp_path / "device_scaling.md").read_text().count("\n| ") == 3  # header + 2 rows
  bad = subprocess.run(script + ["--devices", "3", "--batch-size", "8"], capture_output=True, text=True,
                       check=False, cwd=root)
  assert bad.returncode == 2 and "divisible" in bad.stderr


def test_importing_benchmarks_applies_the_library_xla_flags_first():
  # `python -m benchmarks.<module>` must set jaxrobust's XLA:CPU flags before JAX starts a backend.
  code = "import sys, benchmarks; print('jaxrobust' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=pathlib.Path(__file__).resolve().parents[1], check=True)
  assert out.stdout.strip() == "True"
