"""Chaos: SIGKILL the pipeline inside every stage; the result must not move.

Runs `gin/experiments/chaos.gin` (the demo study, shrunk; 4 sample shards)
once without interruption, timing every stage call, then again under a
planned series of kill -9s: at least 3 inside each of base training,
sampling, aggregation, fine-tuning and evaluation. Each kill is aimed by the
child process itself (`--child`), which wraps the stage functions:

- `timer`: SIGKILL a random fraction of the way through what is left of a
  stage call (see below), so it lands mid-computation or mid-checkpoint;
- `in_write`: SIGKILL inside an atomic write of a stage's `.jsonl` output
  (the temp file written, not yet renamed);
- `before_marker`: SIGKILL after that file is renamed and before its
  `.COMPLETED` marker is written (a torn shard);
- `between_writes`: SIGKILL at the start of a stage call's second file
  write, the first one done (aggregation: its manifest written, the
  self-generated file not begun). Aggregation's calls last ~0.03 s, too
  short for a timer to land in reliably.

A timer misses when its call ends first (a call can run twice as fast as
in the clean run on this VM). The child then stops at the next stage call
(or at the end) and reports how long the missed call ran; the parent puts
the output directory back as it was before that attempt (copied before
each timer attempt) and tries again, aimed by the time just seen. Without
that, a miss in a call that never recurs (base training has one) ended the
plan.

After each kill the pipeline is restarted; after the last it runs to the
end. Then every self-generated file, sample shard, metrics.json and every
eval's predictions are compared byte for byte, and the parameters of every
final checkpoint bitwise. Prints each kill (stage, call, how it landed) and
a verdict.

All runs share one jax compilation cache (emptied at the start, so the
clean run compiles cold); restarts load their programs from it. A timer
kill is aimed by what is left of the clean call: its time net of compiling,
less the time (net of compiling) that earlier kills of the same call ran,
since a resumed call has at most that much left to do. `--jax_cache=off`
compiles in every run.

    python tools/chaos.py [--seed=0] [--per_stage=3] [--jax_cache=on|off]
        [--out=runs/chaos_bench]
"""

from __future__ import annotations

import argparse
import collections
import filecmp
import fnmatch
import glob
import json
import os
import random
import runpy
import shutil
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

COMPARED = ('metrics.json', '*/selfgen/selfgen.jsonl', '*/samples/*.jsonl',
            '*/eval/predictions.jsonl', '*/eval/eval.json',
            'data/*.jsonl', 'data/vocab.json')
# Stage name -> (module, function) the pipeline calls for it. Only the
# outermost stage call counts (base training evaluates and trains inside).
STAGES = {'base training': ('lmsi.demo.base', 'train_base'),
          'sampling': ('lmsi.sampling.shard', 'sample'),
          'aggregation': ('lmsi.voting.aggregation', 'aggregate'),
          'fine-tuning': ('lmsi.trainer.trainer', 'train_with'),
          'evaluation': ('lmsi.evaluation.evaluator', 'evaluate')}
# Kills in pipeline order (a run killed past a stage cannot return to it).
PLAN = (('base training', 'timer'),) * 3 + (
    ('evaluation', 'timer'), ('sampling', 'timer'),
    ('sampling', 'before_marker'), ('sampling', 'in_write'),
    ('aggregation', 'in_write'),
    ('aggregation', 'before_marker'), ('aggregation', 'between_writes'),
    ('fine-tuning', 'timer'), ('evaluation', 'in_write'),
    ('fine-tuning', 'timer'), ('fine-tuning', 'timer'),
    ('evaluation', 'timer'))
ATTEMPTS = 3  # tries per planned kill (a timer can outlast a resumed call)


class Child:
  """Runs the pipeline in this process with the stage functions wrapped."""

  def __init__(self, plan: dict | None, report: str):
    self.plan, self.report = plan or {}, report
    self.calls = collections.Counter()
    # Wall seconds of each stage call, and the part of them jax spent
    # compiling (or loading a compiled program from the cache).
    self.durations: dict[str, float] = {}
    self.compile: dict[str, float] = {}
    self.active: str | None = None  # the outermost stage call running
    self.started = 0.0  # when it started (monotonic seconds)
    self.written: list[str] = []  # files (not markers) it began writing
    self.missed = None

  def kill(self, key: str, how: str) -> None:
    # How far this call got: wall seconds net of compiling, at most the
    # work it did (a resumed call redoes what its last checkpoint lost).
    progress = 0.0
    if self.active == key:
      progress = max(0.0, time.monotonic() - self.started
                     - self.compile.get(key, 0.0))
    with open(self.report, 'w') as f:
      json.dump({'call': key, 'how': how, 'progress': progress,
                 'missed': self.missed}, f)
    os.kill(os.getpid(), signal.SIGKILL)

  def wrap(self, stage: str, fn):
    def wrapped(*args, **kwargs):
      if self.active:
        return fn(*args, **kwargs)
      key = f'{stage} #{self.calls[stage]}'
      self.calls[stage] += 1
      if self.missed:
        self.kill(key, f'at the start of this call, after a timer missed '
                  f'{self.missed[0]}')
      # Aim by what is left of the call (net of compiling), as the
      # parent reckons it (`run_with_kills`).
      plan = self.plan
      timer, left = None, plan.get('left', {}).get(key, 0.0)
      if (plan.get('stage') == stage and plan['mode'] == 'timer'
          and left >= 0.005):
        delay = plan['fraction'] * left
        timer = threading.Timer(delay, self.kill, (
            key, f'{delay:.2f} s into the call (aimed by {left:.2f} s left '
            'of it, net of compiling)'))
        timer.start()
      self.active, self.started = key, time.monotonic()
      self.compile[key], self.written = 0.0, []
      try:
        return fn(*args, **kwargs)
      finally:
        seconds = time.monotonic() - self.started
        self.active, self.durations[key] = None, seconds
        if timer:
          timer.cancel()
          if seconds > 0.25 * left:  # it did real work and outlived it
            self.missed = (key, seconds - self.compile[key])
    return wrapped

  def write_atomic(self, orig):
    from lmsi.runtime.fileio import (  # pylint: disable=g-import-not-at-top
        MARKER)

    def wrapped(path, write, binary=False):
      mode, stage = self.plan.get('mode'), self.plan.get('stage')
      name = os.path.basename(path)
      # A write of the planned stage's call, named relative to the output.
      mine = bool(self.active and stage and self.active.startswith(stage))
      rel = os.path.relpath(path, self.plan.get('out', '.'))
      if mode == 'between_writes' and mine and self.written:
        self.kill(self.active, f'between writes: {self.written[-1]} written, '
                  f'{rel} not yet begun')
      if self.active and not name.endswith(MARKER):
        self.written.append(rel)
      if (mode in ('in_write', 'before_marker') and mine
          and fnmatch.fnmatch(name, '*.jsonl' + ('' if mode == 'in_write'
                                                 else MARKER))):
        if mode == 'before_marker':
          self.kill(self.active, f'{rel[:-len(MARKER)]} renamed, its '
                    'marker not yet written')
        def partial(f):
          write(f)
          f.flush()
          self.kill(self.active, f'inside the write of {rel} (temp file '
                    'written, not renamed)')
        return orig(path, partial, binary)
      return orig(path, write, binary)
    return wrapped

  def count_compile(self, event: str, seconds: float, **_) -> None:
    if event == '/jax/core/compile/backend_compile_duration' and self.active:
      self.compile[self.active] += seconds

  def run(self, argv: list[str]) -> None:
    import importlib  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    from lmsi.runtime import fileio  # pylint: disable=g-import-not-at-top
    jax.monitoring.register_event_duration_secs_listener(self.count_compile)
    for stage, (module, name) in STAGES.items():
      mod = importlib.import_module(module)
      setattr(mod, name, self.wrap(stage, getattr(mod, name)))
    fileio.write_atomic = self.write_atomic(fileio.write_atomic)
    sys.argv = ['lmsi.pipeline', *argv]
    try:
      runpy.run_module('lmsi.pipeline', run_name='__main__')
    except SystemExit as e:
      if e.code:
        raise
    with open(self.report, 'w') as f:
      json.dump({'finished': True, 'durations': self.durations,
                 'compile': self.compile, 'missed': self.missed}, f)


def _child_command(out: str, plan: dict | None, report: str) -> list[str]:
  return [sys.executable, os.path.abspath(__file__), '--child',
          f'--plan={json.dumps(plan or {})}', f'--report={report}', '--',
          '--gin_file=gin/experiments/chaos.gin', f'--gin.OUTPUT_DIR="{out}"']


def _env(jax_cache: str | None) -> dict[str, str]:
  env = {**os.environ, 'PYTHONPATH': REPO, 'TF_CPP_MIN_LOG_LEVEL': '3',
         'JAX_PLATFORMS': 'cpu'}
  if jax_cache:
    # One compilation cache for every run of the bench, so a restart loads
    # the programs the runs before it compiled. A cached program is the one
    # XLA compiled, so results stay bitwise the same. The size limit turns
    # on jax's file lock.
    env.update(JAX_COMPILATION_CACHE_DIR=jax_cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.1',
               JAX_COMPILATION_CACHE_MAX_SIZE=str(4 << 30))
  return env


def run_child(out: str, plan: dict | None, log,
              env: dict[str, str]) -> dict:
  """Runs the pipeline once; returns the child's report (kill or finish)."""
  report = os.path.join(os.path.dirname(out), 'child.json')
  if os.path.exists(report):
    os.remove(report)
  proc = subprocess.run(_child_command(out, plan, report), cwd=REPO,
                        env=env, stdout=log, stderr=subprocess.STDOUT,
                        check=False)
  if not os.path.exists(report):
    raise RuntimeError(f'pipeline exited {proc.returncode} without a report;'
                       f' see {log.name}')
  with open(report) as f:
    result = json.load(f)
  if 'finished' not in result and proc.returncode != -signal.SIGKILL:
    raise RuntimeError(f'child reported a kill but exited {proc.returncode}')
  return result


def run_with_kills(out: str, clean: dict, per_stage: int,
                   rng: random.Random, log,
                   env: dict[str, str]) -> list[tuple[str, dict]]:
  shutil.rmtree(out, ignore_errors=True)
  seen, history = collections.Counter(), []
  # What is left of each stage call, net of compiling (restarts load their
  # programs from the shared compilation cache): the clean call's time,
  # less the progress of earlier kills in the call (a resumed call has at
  # least that much less to do), or the time a missed call was just seen
  # to take.
  left = {k: v - clean['compile'][k] for k, v in clean['durations'].items()}
  before = out + '.before'
  for stage, mode in PLAN:
    seen[stage] += 1
    if seen[stage] > per_stage:
      continue
    for _ in range(ATTEMPTS):
      shutil.rmtree(before, ignore_errors=True)
      if mode == 'timer' and os.path.exists(out):  # only a timer can miss
        shutil.copytree(out, before)
      result = run_child(out, {
          'stage': stage, 'mode': mode, 'fraction': rng.uniform(0.1, 0.7),
          'left': left, 'out': out}, log, env)
      if result.get('missed'):
        call, seconds = result['missed']
        print(f'timer missed {call}: it ended after {seconds:.2f} s (net of '
              f'compiling) against {left[call]:.2f} s aimed by; output put '
              'back as before this attempt, trying again', flush=True)
        left[call] = seconds
        shutil.rmtree(out)
        if os.path.exists(before):
          shutil.copytree(before, out)
        continue
      if 'finished' in result:
        print(f'the run finished before a {mode} kill in {stage}')
        return history
      history.append((stage, result))
      left[result['call']] -= result.get('progress', 0.0)
      print(f'kill {len(history):>2} [{stage}]: {result["call"]}, '
            f'{result["how"]}', flush=True)
      break
  shutil.rmtree(before, ignore_errors=True)
  run_child(out, None, log, env)
  return history


def compare(clean: str, chaos: str) -> list[str]:
  """Differences between the two runs (empty when identical)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from lmsi.checkpoints import (  # pylint: disable=g-import-not-at-top
      store as checkpoints)
  diffs, n_files = [], 0
  for pattern in COMPARED:
    for a in sorted(glob.glob(os.path.join(clean, pattern))):
      b = os.path.join(chaos, os.path.relpath(a, clean))
      n_files += 1
      if not os.path.exists(b) or not filecmp.cmp(a, b, shallow=False):
        diffs.append(f'file differs: {os.path.relpath(a, clean)}')
  n_params = 0
  for model in ('base', 'r1/model', 'control/model', 'no_vote/model'):
    ta = ocp.StandardCheckpointer().restore(
        checkpoints.params_path(os.path.join(clean, model)))
    tb = ocp.StandardCheckpointer().restore(
        checkpoints.params_path(os.path.join(chaos, model)))
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
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--per_stage', type=int, default=3,
                      help='kills per stage (at most 3)')
  parser.add_argument('--out', default=os.path.join(REPO, 'runs',
                                                    'chaos_bench'))
  parser.add_argument('--jax_cache', default='on', choices=('on', 'off'),
                      help='one jax compilation cache (emptied first) for '
                      'all runs of the bench, so restarts skip compiling')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--plan', default='{}', help=argparse.SUPPRESS)
  parser.add_argument('--report', help=argparse.SUPPRESS)
  args, rest = parser.parse_known_args()
  if args.child:
    Child(json.loads(args.plan), args.report).run(
        [a for a in rest if a != '--'])
    return
  os.makedirs(args.out, exist_ok=True)
  jax_cache = None
  if args.jax_cache == 'on':
    jax_cache = os.path.join(args.out, 'jax_cache')
    shutil.rmtree(jax_cache, ignore_errors=True)
  env = _env(jax_cache)
  print(f'jax compilation cache: {jax_cache or "off"}')
  with open(os.path.join(args.out, 'log.txt'), 'w') as log:
    clean = os.path.join(args.out, 'clean')
    shutil.rmtree(clean, ignore_errors=True)
    t0 = time.monotonic()
    report = run_child(clean, None, log, env)
    print(f'uninterrupted run: {time.monotonic() - t0:.0f} s; stage calls '
          '(of which compiling): ' + ', '.join(
              f'{k} {v:.2f} s ({report["compile"][k]:.2f})'
              for k, v in report['durations'].items()))
    t0 = time.monotonic()
    history = run_with_kills(os.path.join(args.out, 'chaos'), report,
                             args.per_stage, random.Random(args.seed), log,
                             env)
    print(f'chaos run: {len(history)} kills, {time.monotonic() - t0:.0f} s')
  diffs = compare(clean, os.path.join(args.out, 'chaos'))
  landed = collections.Counter(s for s, _ in history)
  short = [s for s in STAGES if landed[s] < args.per_stage]
  print('kills landed per stage: ' + ', '.join(
      f'{s} {landed[s]}' for s in STAGES))
  if diffs or short:
    print('\n'.join(diffs))
    print(f'FAIL: {len(diffs)} differences; stages short of '
          f'{args.per_stage} kills: {short}')
    sys.exit(1)
  print(f'PASS: {len(history)} kills ({args.per_stage}+ in each of '
        f'{len(STAGES)} stages), restarts ended byte-identical (files) and '
        'bitwise-equal (parameters)')


if __name__ == '__main__':
  main()
