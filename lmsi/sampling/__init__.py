"""Sampling m paths per question: the prefix-shared prefill, the
continuous-batching decode on slots, drawing a token, and the sampling
stage (`sample`, `sample_task`, what `python -m lmsi.sample` runs).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # generation
  from lmsi.sampling.generation import (
      SamplingConfig,
      Generation,
      Prefix,
      generate,
      prefix_for,
      common_prefix,
      place_params,
      greedy_reference)
  # kernels: the jitted pieces of the decode loop over a typed state
  from lmsi.sampling.kernels import (
      SlotState, Sampler, prefill, init_state, refill, decode_chunk, resize)
  # shard
  from lmsi.sampling.shard import sample, sample_task

__all__ = [
    'SamplingConfig',
    'Generation',
    'Prefix',
    'generate',
    'prefix_for',
    'common_prefix',
    'place_params',
    'greedy_reference',
    'SlotState',
    'Sampler',
    'prefill',
    'init_state',
    'refill',
    'decode_chunk',
    'resize',
    'sample',
    'sample_task',
]
