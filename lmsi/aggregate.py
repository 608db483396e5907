r"""Command: vote over sampled paths, write the self-generated mixture (4-5).

    python -m lmsi.aggregate --gin_file=gin/runs/aggregate.gin --gin.TASK=... \
        --gin.SAMPLES_DIR=... --gin.OUTPUT_DIR=...

The work is `lmsi.voting.aggregation.aggregate_task`
(its docstring says what it reads and writes);
gin binds the names below as `aggregate.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `aggregate.<name>` (`from lmsi import
# aggregate`).
from lmsi.voting.aggregation import (  # pylint: disable=unused-import
    aggregate_task)

__all__ = ['aggregate_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.aggregate', 'aggregate_task',
                 output_dir_arg='output_dir')
