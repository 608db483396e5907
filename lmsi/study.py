r"""Command: the LMSI study for any pool task and any model (`make paper`).

    python -m lmsi.study --gin_file=gin/experiments/paper_gsm8k.gin \
        --gin.OUTPUT_DIR=...

The work is `lmsi.studies.benchmark.run_study`
(its docstring says what it reads and writes);
gin binds the names below as `study.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `study.<name>` (`from lmsi import
# study`).
from lmsi.studies.benchmark import (  # pylint: disable=unused-import
    StudyArms, StudyTasks, run_study)

__all__ = ['StudyArms', 'StudyTasks', 'run_study']

if __name__ == '__main__':
  gin_flags.main('lmsi.study', 'run_study', output_dir_arg='output_dir')
