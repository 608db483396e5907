"""The T5X-style trainer: optimizer and jitted step, init or resume,
the loop with clu writers (what `python -m lmsi.train` runs).
"""

# pylint: disable=g-importing-member
from etils import epy as _epy

with _epy.lazy_api_imports(globals()):
  # trainer
  from lmsi.trainer.trainer import TrainSettings, TrainResult, train, train_with
  # loop
  from lmsi.trainer.loop import Plateau
  # step
  from lmsi.trainer.step import make_optimizer, make_train_step
  # state
  from lmsi.trainer.state import (TrainState, init_or_restore,
                                  optimizer_state_specs)

__all__ = [
    'TrainSettings',
    'TrainResult',
    'train',
    'train_with',
    'Plateau',
    'make_optimizer',
    'make_train_step',
    'TrainState',
    'init_or_restore',
    'optimizer_state_specs',
]
