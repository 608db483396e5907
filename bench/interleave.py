"""Benchmark: lmsi's sampling speed at two git revisions, runs interleaved.

This VM's speed drifts by 10-30% within minutes (matmul peak 237-332
GFLOP/s in one session), more than most changes to the sampler. So a
before/after comparison here runs the same workload (`bench/sampling.py`'s
lmsi f32 engine: SmolLM2-135M, the GSM8K 8-shot prompt, m = 32, T 0.7,
top-k 40, <= 256 steps) at each revision in turn, A B A B ..., each run in
its own process, and prints every run and each arm's mean and range. Each
revision is checked out in a temporary git worktree; its compiles go to a
jax cache of its own and are not counted (`bench/sampling.py`).

    python bench/interleave.py --a=f820270 --b=HEAD [--runs=3]
        [--a_args='...'] [--b_args='--num_slots=64']

`--a_args`/`--b_args` pass extra flags to that arm's `bench/sampling.py`
(e.g. the same revision twice with two slot counts).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import common  # pylint: disable=wrong-import-position
ROW = re.compile(r'^lmsi f32\s+\d+\s+(\d+)\s+([\d.]+)\s+([\d.]+)', re.M)


def _run(checkout: str, cache: str, extra: str) -> tuple[int, float, float]:
  """(tokens, seconds, tokens/s) of one lmsi f32 run in `checkout`."""
  # The data this checkout's bench reads, given to each worktree's (their
  # own '../shared/data' would not exist).
  env = dict(os.environ, LMSI_DATA_DIR=os.path.abspath(common.data_dir()))
  cmd = [sys.executable, os.path.join(checkout, 'bench', 'sampling.py'),
         '--engines=lmsi', f'--jax_cache={cache}', *shlex.split(extra)]
  out = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True,
                       text=True, check=False)
  match = ROW.search(out.stdout)
  if out.returncode or not match:
    raise SystemExit(f'{" ".join(cmd)} failed (rc={out.returncode}):\n'
                     f'{out.stdout[-2000:]}\n{out.stderr[-2000:]}')
  return int(match[1]), float(match[2]), float(match[3])


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--a', required=True, help='git revision of arm A')
  parser.add_argument('--b', default='HEAD', help='git revision of arm B')
  parser.add_argument('--runs', type=int, default=3)
  parser.add_argument('--a_args', default='')
  parser.add_argument('--b_args', default='')
  args = parser.parse_args()
  common.require('bench/interleave.py', data=('gsm8k/test.jsonl',),
                 gguf=True)
  with tempfile.TemporaryDirectory() as tmp:
    arms = {}
    for name, rev, extra in (('A', args.a, args.a_args),
                             ('B', args.b, args.b_args)):
      sha = subprocess.run(['git', 'rev-parse', '--short', rev], cwd=REPO,
                           capture_output=True, text=True,
                           check=True).stdout.strip()
      path = os.path.join(tmp, name)
      subprocess.run(['git', 'worktree', 'add', '--detach', '-q', path, sha],
                     cwd=REPO, check=True)
      arms[name] = (sha, path, os.path.join(tmp, f'cache-{name}'), extra)
    results = {name: [] for name in arms}
    try:
      for i in range(args.runs):
        for name, (sha, path, cache, extra) in arms.items():
          tokens, seconds, rate = _run(path, cache, extra)
          results[name].append(rate)
          print(f'run {i + 1} {name} {sha} {extra}: {tokens} tokens in '
                f'{seconds:.1f} s = {rate:.1f} tokens/s', flush=True)
    finally:
      for _, path, _, _ in arms.values():
        subprocess.run(['git', 'worktree', 'remove', '--force', path],
                       cwd=REPO, check=False)
  for name, (sha, _, _, extra) in arms.items():
    rates = results[name]
    print(f'{name} {sha} {extra}: mean {sum(rates) / len(rates):.1f} '
          f'tokens/s over {len(rates)} runs (range {min(rates):.1f}-'
          f'{max(rates):.1f})')
  mean = {n: sum(r) / len(r) for n, r in results.items()}
  print(f'B / A: {mean["B"] / mean["A"]:.3f}x')


if __name__ == '__main__':
  main()
