r"""Command: fine-tune on a SeqIO mixture, T5X-style (LMSI stage 6).

    python -m lmsi.train --gin_file=<model>.gin \
        --gin_file=gin/runs/finetune.gin \
        --gin.MIXTURE_OR_TASK_NAME=... --gin.MODEL_DIR=...

The work is `lmsi.trainer.trainer.train`
(its docstring says what it reads and writes);
gin binds the names below as `train.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `train.<name>` (`from lmsi import
# train`).
from lmsi.trainer.trainer import (  # pylint: disable=unused-import
    Plateau, PreferenceConfig, TrainSettings, train)

__all__ = ['Plateau', 'PreferenceConfig', 'TrainSettings', 'train']

if __name__ == '__main__':
  gin_flags.main('lmsi.train', 'train', output_dir_arg='model_dir')
