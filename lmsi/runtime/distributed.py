"""Joining a multi-process JAX run: the hosts of a TPU pod, or local processes.

Every lmsi binary calls `initialize()` first (through `gin_flags.main`). It
reads the environment that the launchers in `launch/` set:

  LMSI_COORDINATOR_ADDRESS=host:port  LMSI_NUM_PROCESSES=N  LMSI_PROCESS_ID=i
      explicit membership (`launch/local.py` sets these for N local
      processes);
  LMSI_DISTRIBUTED=auto
      let JAX detect the cluster (TPU VM workers, GKE TPU slices:
      `launch/tpu_vm.sh` and `launch/xm_launch.py` set this).

With none of them set, a run is one process and nothing is initialised.

`python -m lmsi.runtime.distributed` is a smoke test of the wiring: each process
prints its index, the device counts and an all-gather of the process indices.
"""

from __future__ import annotations

import json
import os

import jax
from jax.experimental import multihost_utils
import numpy as np

COORDINATOR_ADDRESS = 'LMSI_COORDINATOR_ADDRESS'
NUM_PROCESSES = 'LMSI_NUM_PROCESSES'
PROCESS_ID = 'LMSI_PROCESS_ID'
DISTRIBUTED = 'LMSI_DISTRIBUTED'

# Whether this process has joined a multi-process run (`initialize` once).
initialized = False


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value else None


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               local_device_count: int | None = None) -> None:
  """Calls `jax.distributed.initialize` once, if this run has several processes.

  Must run before anything else touches JAX devices. Later calls do nothing.

  Args:
    coordinator_address: `host:port` of process 0; default
      $LMSI_COORDINATOR_ADDRESS.
    num_processes: default $LMSI_NUM_PROCESSES.
    process_id: this process's index; default $LMSI_PROCESS_ID.
    local_device_count: CPU devices this process exposes (local rehearsal of
      a pod); sets `jax_num_cpu_devices`. None leaves JAX's setting alone.

  Raises:
    ValueError: if only some of the three membership values are given.
  """
  global initialized
  if initialized:
    return
  if local_device_count is not None:
    jax.config.update('jax_num_cpu_devices', local_device_count)
  if coordinator_address is None:
    coordinator_address = os.environ.get(COORDINATOR_ADDRESS) or None
  if num_processes is None:
    num_processes = _env_int(NUM_PROCESSES)
  if process_id is None:
    process_id = _env_int(PROCESS_ID)
  explicit = (coordinator_address, num_processes, process_id)
  if all(v is not None for v in explicit):
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)
  elif any(v is not None for v in explicit):
    raise ValueError(
        f'need all of {COORDINATOR_ADDRESS}, {NUM_PROCESSES} and '
        f'{PROCESS_ID} (or the matching arguments), got '
        f'coordinator_address={coordinator_address!r}, '
        f'num_processes={num_processes!r}, process_id={process_id!r}')
  elif os.environ.get(DISTRIBUTED) == 'auto':
    jax.distributed.initialize()  # JAX detects the TPU pod's hosts.
  else:
    return  # A single process.
  initialized = True


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def barrier(name: str) -> None:
  """Blocks until every process reaches the barrier `name`."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def check() -> dict[str, object]:
  """Joins the run and all-gathers the process indices across processes."""
  initialize()
  gathered = multihost_utils.process_allgather(
      np.array([jax.process_index()], np.int32))  # [P, 1]
  return {'process_index': jax.process_index(),
          'process_count': jax.process_count(),
          'local_device_count': jax.local_device_count(),
          'device_count': jax.device_count(),
          'gathered': np.asarray(gathered).reshape(-1).tolist()}


if __name__ == '__main__':
  print(json.dumps(check(), sort_keys=True), flush=True)
