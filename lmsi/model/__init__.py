"""The Flax Llama-family decoder, its layers and the one table of
logical-axis rules that maps parameters, optimizer state and caches onto
the mesh.
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # decoder
  from lmsi.model.decoder import (
      DecoderConfig,
      Decoder,
      init_params,
      count_params,
      with_dtype,
      logical_param_specs)
  # sharding
  from lmsi.model.sharding import (
      logical_axis_rules,
      create_mesh,
      shardings_for,
      replicated,
      batch_sharding)

__all__ = [
    'DecoderConfig',
    'Decoder',
    'init_params',
    'count_params',
    'with_dtype',
    'logical_param_specs',
    'logical_axis_rules',
    'create_mesh',
    'shardings_for',
    'replicated',
    'batch_sharding',
]
