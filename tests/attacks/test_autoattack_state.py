"""AutoAttack's resumable state: a fingerprint of eps, norm, version, images, labels and model refuses a mismatched
resume naming the part, the save is atomic, a truncated file is a clear error, ``state_dir`` resumes by itself,
and misspelt sub-attack settings are refused."""

import pathlib
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
import aa_helpers as h  # noqa: E402

import jax  # noqa: E402

from jaxrobust.attacks import autoattack as AA  # noqa: E402

KEY = jax.random.PRNGKey(0)
FAST = dict(attacks=["apgd-ce", "apgd-dlr"], attack_kwargs={"apgd-ce": {"n_iter": 3}, "apgd-dlr": {"n_iter": 3}})


def _case():
  f = h.random_model(0)
  x = h.random_images(0, 16)
  y = jax.numpy.argmax(f(x), 1)
  return f, x, y


class _Stop(Exception):
  pass


def _state_after_first_stage(f, x, y, path, eps=0.1):
  def save_then_stop(state):
    state.save(path)
    raise _Stop
  with pytest.raises(_Stop):
    AA.run_autoattack(f, x, y, KEY, eps=eps, on_stage_end=save_then_stop, **FAST)
  return AA.AutoAttackState.load(path)


def test_resume_refuses_other_eps_images_labels_and_model(tmp_path):
  f, x, y = _case()
  path = tmp_path / "state.npz"
  state = _state_after_first_stage(f, x, y, path)
  assert int(state.stage) == 1 and dict(state.fingerprint)["eps"] == "0.1"
  assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]  # no temporary file left by the atomic save
  run = lambda **kw: AA.run_autoattack(**{**dict(logits_fn=f, x=x, y=y, key=KEY, eps=0.1, state=state), **kw,  # noqa: E731
                                          **FAST})
  with pytest.raises(ValueError, match=r"these differ: eps \(state '0.1', this call '0.05'\)"):
    run(eps=0.05)
  with pytest.raises(ValueError, match=r"these differ: images .*model"):
    run(x=h.random_images(1, 16))
  with pytest.raises(ValueError, match=r"these differ: labels"):
    run(y=(y + 1) % 10)
  with pytest.raises(ValueError, match=r"these differ: model"):
    run(logits_fn=h.random_model(1))
  _, rep = run()  # the matching resume runs the remaining stage
  _, full = AA.run_autoattack(f, x, y, KEY, eps=0.1, **FAST)
  np.testing.assert_array_equal(rep["robust"], full["robust"])


def test_truncated_state_file_names_the_file(tmp_path):
  f, x, y = _case()
  path = tmp_path / "state.npz"
  _state_after_first_stage(f, x, y, path)
  path.write_bytes(path.read_bytes()[:200])
  with pytest.raises(ValueError, match=r"state.npz' is truncated or not an AutoAttack state"):
    AA.AutoAttackState.load(path)


def test_state_dir_resumes_and_refuses_another_model(tmp_path):
  f, x, y = _case()
  xa, rep = AA.run_autoattack(f, x, y, KEY, eps=0.1, state_dir=tmp_path, **FAST)
  files = list(tmp_path.glob("autoattack_*.npz"))
  assert len(files) == 1 and int(AA.AutoAttackState.load(files[0]).stage) == 2
  xb, again = AA.run_autoattack(f, x, y, KEY, eps=0.1, state_dir=tmp_path, **FAST)  # finished: read back
  np.testing.assert_array_equal(np.asarray(xa), np.asarray(xb))
  np.testing.assert_array_equal(rep["robust"], again["robust"])
  with pytest.raises(ValueError, match="these differ: model"):
    AA.run_autoattack(h.random_model(1), x, y, KEY, eps=0.1, state_dir=tmp_path, **FAST)


@pytest.mark.parametrize("kwargs,message", [
    ({"apgdce": {"n_iter": 3}}, "unknown AutoAttack component 'apgdce' (did you mean 'apgd-ce'?)"),
    ({"apgd-ce": {"n_iters": 3}}, "unknown option 'n_iters' (did you mean 'n_iter'?); valid: eot_iter, n_iter"),
    ({"square": {"n_query": 3}}, "did you mean 'n_queries'?"),
])
def test_misspelt_sub_attack_settings_are_refused(kwargs, message):
  from jaxrobust.attacks.registry import get_attack
  with pytest.raises(ValueError) as e:
    get_attack("autoattack", eps=0.1, attack_kwargs=kwargs)  # at build time, before any batch
  assert message in str(e.value)
