"""Model storage: one `load_model` for artifacts, converted checkpoints and
orbax model dirs; orbax checkpoints; small-model artifacts (safetensors +
config + vocabulary + digests).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # store
  from lmsi.checkpoints.store import (
      save_params,
      restore_params,
      load_params,
      params_path)
  # load
  from lmsi.checkpoints.load import LoadedModel, load_model
  # artifact
  from lmsi.checkpoints.artifact import Artifact, is_artifact

__all__ = [
    'LoadedModel',
    'load_model',
    'save_params',
    'restore_params',
    'load_params',
    'params_path',
    'Artifact',
    'is_artifact',
]
