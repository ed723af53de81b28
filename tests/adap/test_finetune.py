"""AP Max. fine-tuning from a CE run (``train.init_from``) and the Trainer-level AdAP flow on a tiny task."""

import jax
import numpy as np

from jaxrobust.configs.base import base_config
from jaxrobust.data import load_dataset
from jaxrobust.data.binary import one_vs_all
from jaxrobust.train.init_from import init_state_from_config
from jaxrobust.train.loop import Trainer


def _cfg(tmp_path, method, **train):
  cfg = base_config()
  cfg["output_dir"] = str(tmp_path / method)
  cfg["data"].update(sampler="auto")
  cfg["model"] = {"name": "mlp", "head": "single_logit", "hidden_sizes": (16,)}
  cfg["method"] = {"name": method}
  cfg["optim"].update(name="adam", lr=1e-2, weight_decay=2e-4, schedule="constant")
  cfg["train"].update(dict(dict(epochs=1, batch_size=64, checkpoint_every_steps=10000, init_from=None), **train))
  return cfg


def test_ap_max_finetunes_from_ce_checkpoint_with_fresh_head(tmp_path):
  ds = one_vs_all(load_dataset("digits", "train").take(256), 3)
  ce = Trainer(_cfg(tmp_path, "bce"), train_ds=ds, test_ds=ds, progress=False)
  ce_state = jax.device_get(ce.fit(resume=False))
  ce.checkpointer.close()
  ap = Trainer(_cfg(tmp_path, "ap_max", init_from=str(tmp_path / "bce")), train_ds=ds, test_ds=ds,
                     progress=False)
  fresh = jax.device_get(ap.init_state())
  start = jax.device_get(init_state_from_config(ap))
  np.testing.assert_array_equal(start.params["backbone"]["fc1"]["kernel"], ce_state.params["backbone"]["fc1"]["kernel"])
  np.testing.assert_array_equal(start.params["head"]["kernel"], fresh.params["head"]["kernel"])
  assert not np.array_equal(start.params["head"]["kernel"], ce_state.params["head"]["kernel"])
  assert int(start.step) == 0 and np.all(np.asarray(start.method_state.u_all) == 0)
  # the fine-tune trains on the positive-balanced sampler and writes only positive estimators
  state = jax.device_get(ap.fit(state=init_state_from_config(ap), resume=False))
  ap.checkpointer.close()
  assert int(state.step) == 4
  assert np.all(np.asarray(state.method_state.u_all)[ds.labels == 0] == 0)
  assert np.any(np.asarray(state.method_state.u_all)[ds.labels == 1] > 0)
