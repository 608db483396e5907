"""TPU slice types: chips, hosts, topology and runtime of `v4-32` and friends.

One table of facts for both launchers: `tpu_vm.py` gives gcloud the
accelerator type and runtime version, `xm_launch.py` gives XManager the
resource and topology. Names follow gcloud: `v4-N` and `v5p-N` count
TensorCores (2 per chip), `v5litepod-N` (or `v5e-N`) and `v6e-N` count chips.
"""

from __future__ import annotations

import dataclasses
import re


@dataclasses.dataclass(frozen=True)
class _Generation:
  gcloud_prefix: str   # gcloud's accelerator-type prefix
  cores_per_chip: int  # what the number in the type counts
  dims: int            # 3D torus (v4, v5p) or 2D (v5e, v6e)
  max_chips_per_host: int
  runtime_version: str  # for JAX: cloud.google.com/tpu/docs/runtimes
  xm_resource: str     # xm.JobRequirements keyword


_GENERATIONS = {
    'v4': _Generation('v4', 2, 3, 4, 'tpu-ubuntu2204-base', 'tpu_v4'),
    'v5p': _Generation('v5p', 2, 3, 4, 'v2-alpha-tpuv5', 'tpu_v5p'),
    'v5e': _Generation('v5litepod', 1, 2, 8, 'v2-alpha-tpuv5-lite', 'tpu_v5e'),
    'v6e': _Generation('v6e', 1, 2, 8, 'v2-alpha-tpuv6e', 'tpu_v6e'),
}
_ALIASES = {'v5litepod': 'v5e'}


@dataclasses.dataclass(frozen=True)
class TpuSlice:
  """One TPU slice, e.g. `parse('v4-32')`: 16 chips as 2x2x4 on 4 hosts."""

  generation: str  # 'v4', 'v5p', 'v5e', 'v6e'
  chips: int
  topology: str
  hosts: int

  @property
  def _gen(self) -> _Generation:
    return _GENERATIONS[self.generation]

  @property
  def accelerator_type(self) -> str:
    """gcloud's `--accelerator-type`, e.g. `v5litepod-16`."""
    return f'{self._gen.gcloud_prefix}-{self.chips * self._gen.cores_per_chip}'

  @property
  def runtime_version(self) -> str:
    return self._gen.runtime_version

  def xm_requirements(self) -> dict[str, str]:
    """Keyword arguments of `xm.JobRequirements`, e.g. {'tpu_v4': '2x2x4'}."""
    return {self._gen.xm_resource: self.topology}


def _chips_in(topology: str) -> int:
  size = 1
  for d in topology.split('x'):
    size *= int(d)
  return size


def _topology(chips: int, dims: int) -> str:
  # Slices grow by doubling the last of the shortest sides: 2x2x1, 2x2x2,
  # 2x2x4, 2x4x4, 4x4x4, ... (v4, v5p); 1x1, 2x2, 2x4, 4x4, 4x8, ... (v5e,
  # v6e), as in cloud.google.com/tpu/docs/types-topologies.
  shape = [2, 2, 1] if dims == 3 else [1, 1]
  while _chips_in('x'.join(map(str, shape))) < chips:
    smallest = min(shape)
    i = max(j for j, d in enumerate(shape) if d == smallest)
    shape[i] *= 2
  return 'x'.join(map(str, shape))


def parse(accelerator: str) -> TpuSlice:
  """Parses `v4-32`, `v5p-8`, `v5e-16` / `v5litepod-16` or `v6e-8`.

  Raises:
    ValueError: for an unknown generation or a size that is not a slice.
  """
  m = re.fullmatch(r'(v\d+[a-z]*)-(\d+)', accelerator)
  name = _ALIASES.get(m.group(1), m.group(1)) if m else None
  if name not in _GENERATIONS:
    raise ValueError(f'unknown TPU type {accelerator!r}; expected one of '
                     'v4-N, v5p-N, v5e-N (v5litepod-N), v6e-N')
  gen = _GENERATIONS[name]
  count = int(m.group(2))
  chips, rest = divmod(count, gen.cores_per_chip)
  topology = _topology(chips, gen.dims) if chips else ''
  if rest or not chips or _chips_in(topology) != chips:
    raise ValueError(f'{accelerator!r} is not a {name} slice size')
  if chips <= gen.max_chips_per_host:
    hosts = 1
  else:  # Multi-host slices have 4 chips per host on every generation.
    hosts = chips // 4
  return TpuSlice(generation=name, chips=chips, topology=topology,
                  hosts=hosts)

