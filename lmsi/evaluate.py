r"""Command: accuracy on a labeled split: direct, greedy CoT, maj@k (stage 7).

    python -m lmsi.evaluate --gin_file=<model>.gin \
        --gin_file=gin/runs/eval.gin \
        --gin.TASK=... --gin.INITIAL_CHECKPOINT_PATH=... --gin.OUTPUT_DIR=...

The work is `lmsi.evaluation.evaluator.evaluate_task`
(its docstring says what it reads and writes);
gin binds the names below as `evaluate.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `evaluate.<name>` (`from lmsi import
# evaluate`).
from lmsi.evaluation.evaluator import (  # pylint: disable=unused-import
    EvalConfig, evaluate_task)

__all__ = ['EvalConfig', 'evaluate_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.evaluate', 'evaluate_task', output_dir_arg='output_dir')
