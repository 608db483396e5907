r"""Command: does a model have a self-consistency gap on a task?

    python -m lmsi.probe --gin_file=gin/models/artifact.gin \
        --gin_file=gin/runs/probe.gin \
        --gin.TASK=... --gin.OUTPUT_DIR=...

The work is `lmsi.evaluation.gap_probe.probe_task`
(its docstring says what it reads and writes);
gin binds the names below as `probe.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `probe.<name>` (`from lmsi import
# probe`).
from lmsi.evaluation.gap_probe import (  # pylint: disable=unused-import
    probe_task)

__all__ = ['probe_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.probe', 'probe_task', output_dir_arg='output_dir')
