"""What a preemption save costs: the demo model measured, 8B estimated.

    python tools/preemption_save.py

Saves the demo base's params and AdamW state (as the trainer does at the
step in flight after SIGTERM, `lmsi.checkpoints.store.save`, digests
included) three times into a temp dir, times each save and the digest check
of a restore. For Llama-3-8B fine-tuning on v5e-256 it estimates the save
per host from the AOT-compiled train step's argument bytes per chip (params
+ Adafactor state + batch; docs/learners.md's row) at an assumed write
speed, against the ~30 s a preempted TPU VM gets.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
import jax
import jax.numpy as jnp

from lmsi.checkpoints import artifact
from lmsi.checkpoints import store
from lmsi.trainer import step

# `python -m lmsi.capacity.aot --gin_file=gin/models/llama3_8b.gin
#  --stage=train --learner=sft --batch_size=64 --topology=v5e-256
#  --model_axis=8 --remat=full --scan`: argument bytes per chip.
ARGUMENT_BYTES_PER_CHIP = 126_866_944
CHIPS_PER_HOST = 4  # v5e multi-host slices: 4 chips a host
WRITE_BYTES_PER_S = (100e6, 400e6)  # assumed per-host write speed to GCS


def main() -> None:
  art = artifact.load('assets/demo_base')
  opt = step.make_optimizer('adamw', 1e-3).init(art.params)
  n = sum(x.size for x in jax.tree.leaves(art.params))
  with tempfile.TemporaryDirectory() as d:
    mngr = store.manager(d)
    for s in (1, 2, 3):
      t = time.perf_counter()
      store.save(mngr, s, art.params, {'opt_state': opt,
                                       'step': jnp.int32(s)})
      print(f'demo base ({n:,} params + AdamW state): save {s}: '
            f'{time.perf_counter() - t:.2f} s')
    t = time.perf_counter()
    store.verify_digests(os.path.join(d, 'checkpoints', '3'))
    print(f'digest check of the step before a restore: '
          f'{time.perf_counter() - t:.3f} s')
  per_host = ARGUMENT_BYTES_PER_CHIP * CHIPS_PER_HOST
  lo, hi = (per_host / v for v in reversed(WRITE_BYTES_PER_S))
  print(f'Llama-3-8B on v5e-256, estimate: {per_host / 2**30:.2f} GiB a '
        f'host at {WRITE_BYTES_PER_S[0] / 1e6:.0f}-'
        f'{WRITE_BYTES_PER_S[1] / 1e6:.0f} MB/s: {lo:.1f}-{hi:.1f} s of '
        'the ~30 s notice (not measured: no TPU here)')


if __name__ == '__main__':
  main()
