"""Logical axis names and the one table that maps them onto the mesh.

Model code names axes with the constants below and never mentions mesh axes.
`logical_axis_rules` is the only place where logical axes meet the
`('data', 'model')` mesh, so the same compiled code runs on 1 CPU, 8 fake
devices, a GPU or a TPU pod.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = 'data'
MODEL = 'model'

BATCH = 'batch'
LENGTH = 'length'
EMBED = 'embed'
HEADS = 'heads'
KV_HEADS = 'kv_heads'
KV = 'kv'
MLP = 'mlp'
VOCAB = 'vocab'
CACHE_BATCH = 'cache_batch'
CACHE_SAMPLES = 'cache_samples'
CACHE_HEADS = 'cache_heads'
CACHE_LENGTH = 'cache_length'

Rules = tuple[tuple[str, str | None], ...]


def logical_axis_rules(for_sampling: bool = False) -> Rules:
  """The logical-axis -> mesh-axis table.

  Training shards the embedding dimension of weights over `data` (FSDP);
  sampling keeps weights replicated over `data` and shards the KV cache's batch
  instead. Those are the only rows that differ.

  Args:
    for_sampling: use the sampling column of the table.

  Returns:
    Rules usable with `flax.linen.logical_to_mesh_sharding`.
  """
  return (
      (BATCH, DATA),
      (LENGTH, None),
      (EMBED, None if for_sampling else DATA),
      (HEADS, MODEL),
      (KV_HEADS, MODEL),
      (KV, None),
      (MLP, MODEL),
      (VOCAB, MODEL),
      (CACHE_BATCH, DATA if for_sampling else None),
      (CACHE_SAMPLES, None),
      (CACHE_HEADS, MODEL if for_sampling else None),
      (CACHE_LENGTH, None),
  )


def create_mesh(
    data: int = -1, model: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """Builds a `('data', 'model')` mesh.

  Args:
    data: size of the data axis; -1 takes all devices left after `model`.
    model: size of the model axis (T5X's `num_partitions`).
    devices: devices to use; defaults to `jax.devices()`.

  Returns:
    The mesh.

  Raises:
    ValueError: if the shape does not use exactly the available devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  if data == -1:
    if len(devices) % model:
      raise ValueError(
          f'model={model} does not divide the {len(devices)} devices'
      )
    data = len(devices) // model
  if data * model != len(devices):
    raise ValueError(
        f'mesh {data}x{model} needs {data * model} devices, '
        f'but {len(devices)} are available'
    )
  return Mesh(np.asarray(devices).reshape(data, model), (DATA, MODEL))


def shardings_for(
    logical_specs, mesh: Mesh, rules: Rules, shapes=None
):  # -> pytree of NamedSharding
  """Maps a pytree of logical PartitionSpecs to NamedShardings on `mesh`.

  With `shapes` (a matching pytree of arrays), a dimension the mesh axis
  does not divide (e.g. SmolLM2's 9 heads on a model axis of 2) is
  replicated instead, so any mesh shape works.
  """
  out = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
  if shapes is None:
    return out

  def fit(named: NamedSharding, x) -> NamedSharding:
    spec = []
    for dim, axis in zip(x.shape, tuple(named.spec) +
                         (None,) * (len(x.shape) - len(named.spec))):
      names = (axis,) if isinstance(axis, str) else tuple(axis or ())
      size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
      spec.append(axis if dim % size == 0 else None)
    return NamedSharding(mesh, PartitionSpec(*spec))

  return jax.tree_util.tree_map(fit, out, shapes)


def replicated(mesh: Mesh) -> NamedSharding:
  """A sharding that keeps a value whole on every device."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Shards the leading (batch) axis over `data`, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec(DATA, *([None] * (ndim - 1))))
