r"""Command: self-generated questions, a pool from a few seeds (paper 3.3).

    python -m lmsi.question_gen --gin_file=gin/runs/question_gen.gin \
        --gin.TASK=... --gin.OUTPUT_DIR=...

The work is `lmsi.self_inputs.questions.generate_pool_task`
(its docstring says what it reads and writes);
gin binds the names below as `question_gen.<name>`. Re-running resumes.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `question_gen.<name>` (`from lmsi import
# question_gen`).
from lmsi.self_inputs.questions import (  # pylint: disable=unused-import
    QuestionGenConfig, generate_pool_task)

__all__ = ['QuestionGenConfig', 'generate_pool_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.question_gen', 'generate_pool_task',
                 output_dir_arg='output_dir')
