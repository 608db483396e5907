"""Binary: does a model have a self-consistency gap on a task?

LMSI trains on the majority-voted paths of the model's own samples, so it
can only help where voting beats greedy decoding: no gap, no gain. On N
labeled questions this runs greedy CoT and m sampled CoT paths
(`lmsi.evaluate`) and reports maj@k for k = 1, 2, 4, ... and m, the gap
over greedy in points, the calibration curve (accuracy of the majority
answer per vote-share bin) and a verdict. The model is an `lmsi.checkpoints.artifact`
directory or an orbax model dir with a gin model config and vocabulary.
Writes eval.json, predictions.jsonl, probe.json, probe.md, probe.png and
probe_manifest.json to the output directory.
"""

from lmsi.runtime import gin_flags
# The entry and what gin files bind as `probe.<name>` (`from lmsi import probe`).
from lmsi.evaluation.gap_probe import probe_task  # pylint: disable=unused-import

__all__ = ['probe_task']

if __name__ == '__main__':
  gin_flags.main('lmsi.probe', 'probe_task', output_dir_arg='output_dir')
