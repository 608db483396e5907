"""Command: the demo study: LMSI rounds, control and ablations (`make demo`).

    python -m lmsi.pipeline --gin_file=gin/experiments/demo.gin [--gin.SEED=1]

The work is `lmsi.studies.demo.run_pipeline`
(its docstring says what it reads and writes);
gin binds the names below as `pipeline.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `pipeline.<name>` (`from lmsi import
# pipeline`).
from lmsi.studies.demo import (  # pylint: disable=unused-import
    Ablation, Student, run_pipeline)

__all__ = ['Ablation', 'Student', 'run_pipeline']

if __name__ == '__main__':
  gin_flags.main('lmsi.pipeline', 'run_pipeline', output_dir_arg='output_dir')
