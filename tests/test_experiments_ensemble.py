"""The TA-MOO attack-comparison experiment runs end to end in its --quick mode (tiny members and attacks)."""

import json

import pytest


@pytest.mark.slow  # ~2 min on 2 loaded cores (4 tiny PGD-AT trainings, 17 attack programs compiled); -m slow
def test_attack_comparison_quick(tmp_path):
  from experiments.ensemble import attack_comparison as ac
  out = tmp_path / "attack_comparison"
  assert ac.main(["--quick", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)]) == 0
  doc = json.loads(out.with_suffix(".json").read_text())
  tasks = {r["task"] for r in doc["results"].values()}
  assert tasks == {"ens", "uni", "eot"}
  seeds = len(ac.QUICK["seeds"])
  variants = sum(len(v) for v in ac.VARIANTS.values())
  # every weighting per seed, one "no attack" row per task set, the extra variants per seed
  assert len(doc["results"]) == len(ac.TASKS) * (len(ac.WEIGHTINGS) * seeds + 1) + variants * seeds
  for r in doc["results"].values():
    assert r["a_all"] <= min(r["a_i"]) + 1e-6 and min(r["a_i"]) <= r["a_avg"] + 1e-6 <= max(r["a_i"]) + 2e-6
  md = out.with_suffix(".md").read_text()
  assert "## ENS" in md and "## UNI" in md and "## EoT" in md
