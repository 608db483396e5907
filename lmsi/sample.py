r"""Command: sample m reasoning paths per unlabeled question (LMSI stage 3).

    python -m lmsi.sample --gin_file=<model>.gin \
        --gin_file=gin/runs/sample.gin \
        --gin.TASK=... --gin.OUTPUT_DIR=...

The work is `lmsi.sampling.shard.sample_task`
(its docstring says what it reads and writes);
gin binds the names below as `sample.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `sample.<name>` (`from lmsi import
# sample`).
from lmsi.sampling.shard import sample_task  # pylint: disable=unused-import

__all__ = ['sample_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.sample', 'sample_task', output_dir_arg='output_dir')
