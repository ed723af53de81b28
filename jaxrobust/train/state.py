"""The train state: one pytree holding everything a run needs to continue bit-exactly."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar; params/batch_stats: model variables; opt_state: optax state;
  key: PRNG key (raw uint32 data, so checkpoints store it as a plain array);
  method_state: the method's pytree (moving averages, counters)."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  key: jax.Array
  method_state: Any


def create_train_state(variables, tx, key, method_state=()) -> TrainState:
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), key=jax.random.key_data(key) if _is_typed_key(key) else key,
                    method_state=method_state)


def _is_typed_key(key) -> bool:
  return jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def variables_of(state: TrainState) -> dict:
  """{'params': ..., 'batch_stats': ...} for model.apply (batch_stats omitted when empty)."""
  out = {"params": state.params}
  if jax.tree.leaves(state.batch_stats):
    out["batch_stats"] = state.batch_stats
  return out
