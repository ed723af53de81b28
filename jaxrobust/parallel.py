"""Data parallelism with today's JAX sharding API: one mesh axis 'data' over all devices.

Train and evaluation steps are ``jax.jit``-ed with the state replicated and the batch sharded
along its leading axis, so XLA (GSPMD, Xu et al. 2021) inserts the gradient all-reduce; the program computes
exactly what the single-device program computes on the global batch (batch-norm statistics
included), which is what the 1-vs-8-device test checks. Multi-host runs call
``initialize_distributed()`` first; each host then feeds only its shard of every global batch
(``jaxrobust.data.batch_iterator`` does the split) and ``host_local_to_global`` assembles it.
Evaluation instead gives every host the whole global batch (``place_global``: each host places only the rows
of its own devices) and brings results back to every host (``to_host``), so all hosts keep the same host-side
bookkeeping (AutoAttack's still-robust sets) and write the same report.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, *, auto: bool = False) -> None:
  """Calls ``jax.distributed.initialize`` for multi-host runs (TPU pods, multi-node GPU, CPU).

  With explicit settings they are passed on; with ``auto=True`` JAX detects the cluster (TPU
  pods, SLURM, Open MPI); otherwise nothing happens unless JAX_COORDINATOR_ADDRESS is set.
  On CPU the cross-process collectives use gloo. Must run before any other JAX call.
  """
  explicit = coordinator_address is not None or num_processes is not None or process_id is not None
  if not (explicit or auto or os.environ.get("JAX_COORDINATOR_ADDRESS")):
    return
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms == "cpu" or not platforms:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if coordinator_address is not None:
    kwargs["coordinator_address"] = coordinator_address
  if num_processes is not None:
    kwargs["num_processes"] = int(num_processes)
  if process_id is not None:
    kwargs["process_id"] = int(process_id)
  jax.distributed.initialize(**kwargs)


def is_main_process() -> bool:
  """Process 0 writes logs, reports and progress bars; every process takes part in checkpoints."""
  return jax.process_index() == 0


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (default: all, across hosts)."""
  devices = jax.devices()
  if num_devices is not None:
    if num_devices < 1 or num_devices > len(devices):
      raise ValueError(f"num_devices must be in [1, {len(devices)}]; got {num_devices}")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the 'data' axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(f"global batch size {batch_size} must be divisible by the number of devices {n}")


def shard_batch(batch, mesh: Mesh):
  """Places a host-local batch (dict of arrays) on the mesh, split along the leading axis.

  Single process: a plain device_put with the data sharding. Several processes: each host
  holds its own rows and the global array is assembled from the per-host pieces.
  """
  sharding = data_sharded(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
      lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), batch)


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, replicated(mesh))


def place_global(tree, mesh: Mesh):
  """Places a global batch (dict or array; the same host arrays on every process) on the mesh, split along the
  leading axis, which must be a multiple of the mesh size. Each process transfers only its devices' rows."""
  sharding = data_sharded(mesh)
  check_batch_divisible(len(jax.tree.leaves(tree)[0]), mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def place(a):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
  return jax.tree.map(place, tree)


def to_host(tree):
  """The full value of every array as numpy on every process (an all-gather across processes when an array's
  shards live on several hosts; a plain transfer otherwise)."""
  def fetch(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree.map(fetch, tree)
