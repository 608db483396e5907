"""Binary: accuracy on a labeled split (LMSI stage 7; the only gold reader).

Three ways of prompting (paper §4): direct few-shot (greedy), greedy CoT
(few-shot CoT, temperature 0), and self-consistency maj@k over m sampled CoT
paths for each k in `ks` <= m (the first k samples). Calibration: accuracy
of the majority answer per vote-share bin (paper Fig. 2). Optionally the
self-consistency paths are also drawn at each temperature of a sweep (the
paper reports the best of 0.7, 1.0, 1.2 and 1.5 after LMSI); the main
accuracy stays the configured temperature's, so no number picks its
temperature on the test split.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `evaluate.<name>` (`from lmsi import evaluate`).
from lmsi.evaluation.evaluator import EvalConfig, evaluate_task  # pylint: disable=unused-import

__all__ = ['EvalConfig', 'evaluate_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.evaluate', 'evaluate_task', output_dir_arg='output_dir')
