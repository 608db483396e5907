"""Chaos: SIGKILL the pipeline at 20 random moments; the result must not move.

Runs `gin/experiments/chaos.gin` (the demo study, shrunk) once without
interruption, then again under a killer: start the pipeline, SIGKILL its
process group after a seeded random delay, restart, ... 20 times, then let it
finish. Compares, byte for byte, every self-generated file and sample shard,
metrics.json and every eval's predictions, and bitwise the parameters of every
final checkpoint. Prints each kill (delay, the stage it hit) and a verdict.

    python bench/chaos.py [--kills=20] [--seed=0] [--out=runs/chaos_bench]
"""

from __future__ import annotations

import argparse
import filecmp
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

COMPARED = ('metrics.json', '*/selfgen/selfgen.jsonl', '*/samples/*.jsonl',
            '*/eval/predictions.jsonl', '*/eval/eval.json',
            'data/*.jsonl', 'data/vocab.json')


def _command(out: str) -> list[str]:
  return [sys.executable, '-m', 'lmsi.pipeline',
          '--gin_file=gin/experiments/chaos.gin',
          f'--gin.OUTPUT_DIR="{out}"']


def _env() -> dict[str, str]:
  return {**os.environ, 'PYTHONPATH': REPO, 'TF_CPP_MIN_LOG_LEVEL': '3',
          'JAX_PLATFORMS': 'cpu'}


def _stage(out: str) -> str:
  """The stage the run is in, from the files it has finished so far."""
  done = [p for p in ('data/test.jsonl.COMPLETED', 'base/train_done.json',
                      'base/eval/eval.json', 'r1/samples',
                      'r1/selfgen/selfgen.jsonl.COMPLETED',
                      'r1/model/train_done.json', 'r1/eval/eval.json',
                      'control/model/train_done.json',
                      'control/eval/eval.json',
                      'no_vote/selfgen/selfgen.jsonl.COMPLETED',
                      'no_vote/model/train_done.json', 'metrics.json')
          if os.path.exists(os.path.join(out, p))]
  return f'after {done[-1]}' if done else 'data'


def run_clean(out: str, log) -> float:
  shutil.rmtree(out, ignore_errors=True)
  t0 = time.monotonic()
  subprocess.run(_command(out), cwd=REPO, env=_env(), check=True,
                 stdout=log, stderr=subprocess.STDOUT)
  return time.monotonic() - t0


def restart_seconds(finished: str) -> float:
  """Seconds a restart costs before it can make progress: the pipeline run
  again on a finished output directory (imports, registration, checks)."""
  t0 = time.monotonic()
  subprocess.run(_command(finished), cwd=REPO, env=_env(), check=True,
                 capture_output=True)
  return time.monotonic() - t0


def run_with_kills(out: str, kills: int, rng: random.Random, min_delay: float,
                   max_delay: float, log) -> list[tuple[float, str]]:
  shutil.rmtree(out, ignore_errors=True)
  history = []
  for _ in range(kills):
    delay = round(rng.uniform(min_delay, max_delay), 2)
    proc = subprocess.Popen(_command(out), cwd=REPO, env=_env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
      proc.wait(timeout=delay)
      history.append((delay, 'finished before the kill'))
      break
    except subprocess.TimeoutExpired:
      stage = _stage(out)
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      history.append((delay, stage))
      print(f'kill {len(history):>2}: SIGKILL after {delay:5.2f} s, {stage}',
            flush=True)
  subprocess.run(_command(out), cwd=REPO, env=_env(), check=True, stdout=log,
                 stderr=subprocess.STDOUT)
  return history


def compare(clean: str, chaos: str) -> list[str]:
  """Differences between the two runs (empty when identical)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lmsi import checkpoints  # pylint: disable=g-import-not-at-top
  diffs, n_files = [], 0
  for pattern in COMPARED:
    for a in sorted(glob.glob(os.path.join(clean, pattern))):
      b = os.path.join(chaos, os.path.relpath(a, clean))
      n_files += 1
      if not os.path.exists(b) or not filecmp.cmp(a, b, shallow=False):
        diffs.append(f'file differs: {os.path.relpath(a, clean)}')
  n_params = 0
  for model in ('base', 'r1/model', 'control/model', 'no_vote/model'):
    pa = checkpoints.params_path(os.path.join(clean, model))
    pb = checkpoints.params_path(os.path.join(chaos, model))
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    ta = ocp.StandardCheckpointer().restore(pa)
    tb = ocp.StandardCheckpointer().restore(pb)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(ta),
                            jax.tree_util.tree_leaves(tb)):
      n_params += 1
      if not np.array_equal(np.asarray(x), np.asarray(y)):
        diffs.append(f'params differ: {model} {jax.tree_util.keystr(path)}')
  print(f'compared {n_files} files and {n_params} parameter arrays of 4 '
        'final checkpoints')
  return diffs


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--kills', type=int, default=20)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--out', default=os.path.join(REPO, 'runs',
                                                    'chaos_bench'))
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'log.txt'), 'w') as log:
    clean = os.path.join(args.out, 'clean')
    seconds = run_clean(clean, log)
    print(f'uninterrupted run: {seconds:.0f} s')
    startup = restart_seconds(clean)
    rng = random.Random(args.seed)
    # A restart pays its start-up (imports, registration, compiling) before
    # it makes progress. Delays past the start-up average 1/kills of the run
    # plus 6 s, so a restart progresses (checkpoints every 10 steps) but the
    # run does not finish before the last kill.
    min_delay = startup + 2
    max_delay = startup + 2 * seconds / args.kills + 10
    print(f'restart overhead {startup:.1f} s; kill delays ~ '
          f'U({min_delay:.1f}, {max_delay:.1f}) s, seed {args.seed}')
    t0 = time.monotonic()
    history = run_with_kills(os.path.join(args.out, 'chaos'), args.kills,
                             rng, min_delay, max_delay, log)
    print(f'chaos run: {len(history)} kills, {time.monotonic() - t0:.0f} s')
  diffs = compare(clean, os.path.join(args.out, 'chaos'))
  kills = sum(1 for _, s in history if s != 'finished before the kill')
  if diffs:
    print('\n'.join(diffs))
    print(f'FAIL: {kills} kills, {len(diffs)} differences')
    sys.exit(1)
  print(f'PASS: {kills}/{args.kills} kills, restarts ended byte-identical '
        '(files) and bitwise-equal (parameters)')


if __name__ == '__main__':
  main()
