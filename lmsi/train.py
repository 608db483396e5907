"""Fine-tuning on a SeqIO mixture, T5X-style (LMSI stage 6).

t5x is not on PyPI, so this is our trainer. It keeps the contract of t5x's
`configs/runs/finetune.gin`: macros MIXTURE_OR_TASK_NAME,
TASK_FEATURE_LENGTHS, TRAIN_STEPS, MODEL_DIR, INITIAL_CHECKPOINT_PATH;
`--gin_file` / `--gin.X=...` flags; auto-resume from the latest checkpoint in
MODEL_DIR. Loss is on target tokens only. Metrics go to
`MODEL_DIR/metrics.jsonl` and TensorBoard event files in `MODEL_DIR/tb`
(clu's metric writer; on gs:// too).

The pieces: `train_step` (optimizer, loss, the jitted step), `train_state`
(init or resume), `train_loop` (the loop); `train` wires them up.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `train.<name>` (`from lmsi import train`).
from lmsi.trainer.trainer import Plateau, TrainSettings, train  # pylint: disable=unused-import

__all__ = ['Plateau', 'TrainSettings', 'train']

if __name__ == '__main__':
  gin_flags.main('lmsi.train', 'train', output_dir_arg='model_dir')
