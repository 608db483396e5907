"""Checks demo runs against the bars the demo must clear; prints a table.

  python tools/demo_bars.py runs/demo_s0 runs/demo_s1 ...

For each run's metrics.json (greedy CoT accuracy, maj@16, calibration):
  lmsi+10     LMSI greedy >= base greedy + 10 points
  headline    LMSI greedy >= base maj@16 - 2 (the paper's headline shape)
  vs-novote   LMSI greedy >= no-vote greedy + 5
  vs-control  LMSI greedy >= control greedy + 3
  gap         base maj@16 - base greedy >= 8
  calib       base: every vote-share bin with >= 20 questions is at least as
              accurate as the populated bin below it (2 points slack), and
              the top bin is >= 15 points above every bin below 0.5
Exit status 1 if any bar fails.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import common  # pylint: disable=wrong-import-position


def _calibration_ok(bins: list[dict]) -> bool:
  full = [b for b in bins if b['n'] >= 20]
  rising = all(hi['accuracy'] >= lo['accuracy'] - 0.02
               for lo, hi in zip(full, full[1:]))
  low = [b for b in bins if b['vote_share_hi'] <= 0.5 and b['n']]
  top = [b for b in bins if b['n']][-1]
  return rising and all(top['accuracy'] >= b['accuracy'] + 0.15 for b in low)


def bars(metrics: dict, k: int = 16) -> dict[str, tuple[float, bool]]:
  """{bar: (margin in points, passed)}."""
  base, lmsi = metrics['rounds'][0], metrics['rounds'][-1]
  g = lambda arm: 100 * arm['accuracy']['greedy_cot']
  base_maj = 100 * base['accuracy'][f'maj@{k}']
  out = {
      'lmsi+10': g(lmsi) - g(base) - 10,
      'headline': g(lmsi) - (base_maj - 2),
      'vs-novote': g(lmsi) - g(metrics['no_vote']) - 5,
      'vs-control': g(lmsi) - g(metrics['control']) - 3,
      'gap': base_maj - g(base) - 8,
  }
  result = {name: (round(v, 1), v >= -1e-9) for name, v in out.items()}
  result['calib'] = (0.0, _calibration_ok(base['calibration']))
  return result


def _summary(runs: dict[str, dict], k: int = 16) -> None:
  """Greedy CoT of every arm and the base's maj@k, one line per run."""
  cols = ['base', f'base maj@{k}', 'LMSI r1', 'control', 'no-vote']
  print('greedy CoT accuracy (%) on the test split')
  print('run'.ljust(24) + ''.join(c.rjust(13) for c in cols))
  for name, m in runs.items():
    g = lambda arm: f'{100 * arm["accuracy"]["greedy_cot"]:.1f}'
    cells = [g(m['rounds'][0]),
             f'{100 * m["rounds"][0]["accuracy"][f"maj@{k}"]:.1f}',
             g(m['rounds'][-1]), g(m['control']), g(m['no_vote'])]
    print(name.ljust(24) + ''.join(c.rjust(13) for c in cells))
  print()


def main(run_dirs: list[str]) -> int:
  if not run_dirs:
    print('usage: python tools/demo_bars.py RUN_DIR [RUN_DIR ...] (each a '
          '`make demo` output directory)', file=sys.stderr)
    return 2
  common.require('tools/demo_bars.py',
                 paths=[os.path.join(r, 'metrics.json') for r in run_dirs])
  names = ['lmsi+10', 'headline', 'vs-novote', 'vs-control', 'gap', 'calib']
  runs = {}
  for run in run_dirs:
    with open(os.path.join(run, 'metrics.json'), encoding='utf-8') as f:
      runs[os.path.basename(run.rstrip('/'))] = json.load(f)
  _summary(runs)
  print('run'.ljust(24) + ''.join(n.rjust(12) for n in names))
  failed = False
  for run, metrics in runs.items():
    result = bars(metrics)
    cells = []
    for n in names:
      margin, ok = result[n]
      failed |= not ok
      cells.append(('ok' if ok else 'FAIL') + ('' if n == 'calib'
                                               else f' {margin:+.1f}'))
    print(run.ljust(24) + ''.join(c.rjust(12) for c in cells))
  print('margins: points above (+) or below (-) each bar')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
