"""The README's demo block: the last `make demo`'s table, refreshed on purpose.

`make demo` writes `runs/demo/report.md` and nothing tracked; a maintainer
puts its table into README.md with

    python -m lmsi.studies.readme runs/demo README.md     # `make readme`

The block is stamped with the run's date, seconds and git revision, so the
README shows a run, never a hand-copied table.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence

from absl import app

from lmsi.runtime import fileio
from lmsi.studies import report
from lmsi.studies import results

README_BEGIN = ('<!-- make readme writes this block from runs/demo/report.md; '
                'do not edit -->')
README_END = '<!-- end of the block make readme writes -->'


def _read_json(run_dir: str, name: str) -> dict:
  with open(os.path.join(run_dir, name), encoding='utf-8') as f:
    return json.load(f)


def readme_block(run_dir: str, command: str = 'make demo') -> str:
  """The README's demo result: what `command` measured in `run_dir`
  (metrics.json, timings.json, manifest.json), with date and revision."""
  study = results.StudyResult.from_json(_read_json(run_dir, 'metrics.json'))
  seconds = _read_json(run_dir, 'timings.json').get('total')
  revision = _read_json(run_dir, 'manifest.json').get('git_revision',
                                                      'unknown')
  rows = report.arms(study)
  n = rows[0][1].num_questions if rows else None
  ks = report.maj_ks(study)
  gaps = []
  for name, result in rows:
    accuracy = result.accuracy
    if ks and f'maj@{ks[-1]}' in accuracy and 'greedy_cot' in accuracy:
      gap = accuracy[f'maj@{ks[-1]}'] - accuracy['greedy_cot']
      gaps.append(f'{name} {report.points(gap)}')
  when = datetime.date.today().isoformat()
  lines = [README_BEGIN,
           f'`{command}` on {when}, {seconds:.0f} s, git {revision[:12]} '
           f'(`{run_dir}/report.md`; accuracy in % on the test split'
           + (f', {n} questions' if n else '') + '):', '',
           report.format_markdown_table(study), '']
  if gaps:
    lines += [f'Self-consistency gap maj@{ks[-1]} - greedy CoT, in points: '
              f'{", ".join(gaps)}.', '']
  return '\n'.join(lines + [README_END])


def update_readme(readme: str, run_dir: str,
                  command: str = 'make demo') -> None:
  """Replaces the block between README_BEGIN and README_END in `readme`."""
  with open(readme, encoding='utf-8') as f:
    text = f.read()
  begin, end = text.find(README_BEGIN), text.find(README_END)
  if begin < 0 or end < begin:
    raise ValueError(f'{readme}: no "{README_BEGIN}" ... "{README_END}" '
                     'block to replace')
  fileio.write_text_atomic(readme, text[:begin] + readme_block(run_dir, command)
                            + text[end + len(README_END):])


def main(argv: Sequence[str]) -> None:
  """python -m lmsi.studies.readme RUN_DIR README: the run's table in README."""
  if len(argv) != 3:
    raise SystemExit('usage: python -m lmsi.studies.readme RUN_DIR README.md')
  update_readme(argv[2], argv[1])
  print(f'{argv[2]}: demo result from {argv[1]}')


if __name__ == '__main__':
  app.run(main)
