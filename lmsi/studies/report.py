"""Run reports: accuracy table, report.md and plots (LMSI stage 7).

The input is a study's `results.StudyResult` (what metrics.json holds): the
per-round results plus optional ``control`` and ``no_vote`` arms, ``arms``
(ablations) and ``students`` (before, after), each an `ArmResult` with its
``accuracy`` ({``direct``, ``greedy_cot``, ``maj@k``}), ``calibration``
vote-share bins and, optionally, a temperature ``sweep``. The headline checks
are the paper's two claims (§4): LMSI's greedy CoT vs the base's
self-consistency, and LMSI's maj@5 vs the base's maj@32.
"""

import os
from typing import Any, Sequence


from lmsi.runtime import fileio
from lmsi.evaluation import tables
from lmsi.studies import results

_BASE_METHODS = ('direct', 'greedy_cot')
_EXTRA_ARMS = (('control', 'control'), ('no_vote', 'no-vote'))


def _round_name(index: int) -> str:
  return 'base' if index == 0 else f'LMSI r{index}'


def arms(study: results.StudyResult
         ) -> list[tuple[str, results.ArmResult]]:
  """Returns the ordered (name, result) rows of a run.

  Args:
    study: The run's results.

  Returns:
    ``("base", rounds[0])``, ``("LMSI r1", rounds[1])``, ..., then
    ``("control", ...)`` and ``("no-vote", ...)`` when present, then
    ``study.arms`` in its order, then ``("<name> before", ...)``,
    ``("<name> after", ...)`` for each of ``study.students``.
  """
  rows = [(_round_name(i), r) for i, r in enumerate(study.rounds)]
  for key, name in _EXTRA_ARMS:
    if getattr(study, key) is not None:
      rows.append((name, getattr(study, key)))
  rows += list(study.arms.items())
  for name, student in study.students.items():
    rows += [(f'{name} {when}', getattr(student, when))
             for when in ('before', 'after')
             if getattr(student, when) is not None]
  return rows


def _ks_of(result: results.ArmResult) -> list[int]:
  """Returns the sorted k values of the maj@k in one result's accuracy."""
  return sorted(int(key[4:]) for key in result.accuracy
                if key.startswith('maj@') and key[4:].isdigit())


def maj_ks(study: results.StudyResult) -> list[int]:
  """Returns the sorted k values of every maj@k present in any arm."""
  return sorted({k for _, result in arms(study) for k in _ks_of(result)})


def _columns(study: results.StudyResult) -> list[str]:
  return list(_BASE_METHODS) + [f'maj@{k}' for k in maj_ks(study)]


def _cells(study: results.StudyResult) -> tuple[list[str], list[list[str]]]:
  """Returns the header and the string cells of every row."""
  columns = _columns(study)
  return ['arm'] + columns, [
      [name] + [tables.pct(result.accuracy.get(c)) for c in columns]
      for name, result in arms(study)]


def format_table(study: results.StudyResult) -> str:
  """Formats the accuracy table as fixed-width plain text.

  The arm column is left-aligned; accuracies (in percent, one decimal, ``-``
  when missing) are right-aligned.

  Args:
    study: The run's results.

  Returns:
    The table, one line per arm below a header line, without a trailing
    newline.
  """
  header, rows = _cells(study)
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  widths = [widths[0]] + [max(w, 5) for w in widths[1:]]

  def line(cells: Sequence[str]) -> str:
    parts = [cells[0].ljust(widths[0])]
    parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
    return '  '.join(parts).rstrip()

  return '\n'.join([line(header)] + [line(r) for r in rows])


def format_markdown_table(study: results.StudyResult) -> str:
  """Formats the accuracy table as a markdown table (same cells)."""
  return tables.markdown_table(*_cells(study))


def points(value: float | None) -> str:
  return '-' if value is None else f'{100.0 * value:+.1f}'


def format_gap_markdown(study: results.StudyResult) -> str:
  """maj@k - greedy CoT per arm, in points: the self-consistency gap that
  LMSI moves into greedy decoding (no gap, no gain)."""
  ks = maj_ks(study)
  rows = []
  for name, result in arms(study):
    acc = result.accuracy
    greedy = acc.get('greedy_cot')
    rows.append([name] + [
        points(None if greedy is None or acc.get(f'maj@{k}') is None
                else acc[f'maj@{k}'] - greedy) for k in ks])
  return tables.markdown_table(
      ['arm'] + [f'maj@{k} - greedy' for k in ks], rows)


def headline_checks(study: results.StudyResult) -> list[dict[str, Any]]:
  """The paper's two headline claims (§4), last LMSI round vs the base.

  "LMSI greedy CoT vs base maj@K": K is the largest k both have (else the
  base's largest). "LMSI maj@5 vs base maj@32": without a base maj@32, the
  base's largest k, named in the check's text.

  Args:
    study: The run's results.

  Returns:
    [{"check": text, "arm": "LMSI rN", "lhs": LMSI's accuracy, "rhs": the
    base's, "holds": lhs >= rhs}], "holds" None when a side was not
    measured; [] without a base and an LMSI round or a base maj@k.
  """
  rounds = study.rounds
  base_ks = _ks_of(rounds[0]) if rounds else []
  if len(rounds) < 2 or not base_ks:
    return []
  base, lmsi = rounds[0].accuracy, rounds[-1].accuracy
  k = (sorted(set(base_ks) & set(_ks_of(rounds[-1]))) or base_ks)[-1]
  big = 32 if 32 in base_ks else base_ks[-1]
  note = '' if big == 32 else ' (base has no maj@32: its largest k)'
  out = []
  for text, left, right in (
      (f'LMSI greedy CoT vs base maj@{k}', 'greedy_cot', f'maj@{k}'),
      (f'LMSI maj@5 vs base maj@{big}{note}', 'maj@5', f'maj@{big}')):
    lhs, rhs = lmsi.get(left), base.get(right)
    out.append({'check': text, 'arm': _round_name(len(rounds) - 1),
                'lhs': lhs, 'rhs': rhs,
                'holds': None if lhs is None or rhs is None else lhs >= rhs})
  return out


def format_headline_markdown(study: results.StudyResult) -> str:
  """The headline checks as a markdown table; '' when there are none."""
  holds = {True: 'yes', False: 'no', None: 'not measured'}
  rows = [[c['check'], c['arm'], tables.pct(c['lhs']), tables.pct(c['rhs']),
           points(None if c['holds'] is None else c['lhs'] - c['rhs']),
           holds[c['holds']]] for c in headline_checks(study)]
  header = ['check', 'LMSI arm', 'LMSI', 'base', 'points', 'holds']
  return tables.markdown_table(header, rows) if rows else ''


def format_sweep_markdown(study: results.StudyResult) -> str:
  """maj@k per arm and sampling temperature, for the arms whose result has a
  ``sweep``; the main accuracy's temperature is marked "main", the best by
  the largest k "best". '' when no arm swept."""
  swept = [(name, r) for name, r in arms(study) if r.sweep]
  ks = sorted({int(key[4:]) for _, r in swept for maj in r.sweep.values()
               for key in maj if key.startswith('maj@')})
  rows = []
  for name, result in swept:
    best = (result.sweep_best or {}).get('temperature')
    for t, maj in result.sweep.items():
      tags = [tag for tag, at in (('main', result.temperature),
                                  ('best', best))
              if at is not None and float(t) == float(at)]
      rows.append([name, t + (f' ({", ".join(tags)})' if tags else '')]
                  + [tables.pct(maj.get(f'maj@{k}')) for k in ks])
  header = ['arm', 'T'] + [f'maj@{k}' for k in ks]
  return tables.markdown_table(header, rows) if rows else ''


_STYLE_WHERE = (('greedy', 'greedy CoT outputs'),
                ('sampled', 'sampled paths'),
                ('kept', 'its training paths (kept by the vote)'))


def format_styles_markdown(study: results.StudyResult) -> str:
  """Share (and accuracy, where gold is known) of each reasoning style among
  each arm's greedy outputs, sampled paths and training paths; '' if the
  run recorded no styles."""
  found = [(name, r.styles) for name, r in arms(study) if r.styles]
  names = sorted({s for _, st in found for t in st.values() for s in t})
  if not names:
    return ''
  rows = []
  for arm, st in found:
    for key, where in _STYLE_WHERE:
      table = st.get(key)
      if not table:
        continue
      n = sum(c['n'] for c in table.values())
      cells = []
      for style in names:
        c = table.get(style)
        if c is None:
          cells.append('-')
        elif c.get('accuracy') is None:
          cells.append(f'{100 * c["share"]:.0f}%')
        else:
          cells.append(f'{100 * c["share"]:.0f}% ({100 * c["accuracy"]:.0f})')
      rows.append([arm, where, str(n)] + cells)
  return tables.markdown_table(['arm', 'among', 'n'] + names, rows)


def _write_plots(study: results.StudyResult, output_dir: str) -> list[str]:
  """Writes accuracy.png, maj_at_k.png and calibration.png."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  rows = arms(study)
  ks = maj_ks(study)
  methods = list(_BASE_METHODS) + ([f'maj@{ks[-1]}'] if ks else [])
  paths = []

  def save(fig: Any, name: str) -> None:
    path = os.path.join(output_dir, name)
    fileio.write_atomic(path, lambda f: fig.savefig(f, format='png', dpi=100),
                         binary=True)
    paths.append(path)
    plt.close(fig)

  fig, ax = plt.subplots(figsize=(8, 4.5))
  width = 0.8 / max(len(rows), 1)
  for i, (name, result) in enumerate(rows):
    acc = result.accuracy
    values = [100.0 * (acc.get(m) or 0.0) for m in methods]
    ax.bar([j + (i - (len(rows) - 1) / 2) * width for j in range(len(methods))],
           values, width, label=name)
  ax.set_xticks(range(len(methods)), methods)
  ax.set_ylabel('accuracy (%)')
  ax.legend()
  save(fig, 'accuracy.png')

  fig, ax = plt.subplots(figsize=(6, 4.5))
  for name, result in rows:
    acc = result.accuracy
    points = [(k, 100.0 * acc[f'maj@{k}']) for k in ks
              if acc.get(f'maj@{k}') is not None]
    if points:
      ax.plot(*zip(*points), marker='o', label=name)
  ax.set_xscale('log', base=2)
  ax.set_xlabel('k (sampled paths)')
  ax.set_ylabel('maj@k accuracy (%)')
  if ks:
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.legend()
  save(fig, 'maj_at_k.png')

  fig, ax = plt.subplots(figsize=(6, 4.5))
  for name, result in rows:
    points = [((b['vote_share_lo'] + b['vote_share_hi']) / 2,
               100.0 * b['accuracy'])
              for b in (result.calibration or [])
              if b.get('accuracy') is not None]
    if points:
      ax.plot(*zip(*points), marker='o', label=name)
  ax.set_xlabel('majority vote share')
  ax.set_ylabel('accuracy of majority answer (%)')
  ax.set_xlim(0.0, 1.0)
  if ax.get_legend_handles_labels()[0]:
    ax.legend()
  save(fig, 'calibration.png')
  return paths


def write_report(study: results.StudyResult, output_dir: str, *,
                 title: str = 'LMSI run') -> list[str]:
  """Writes report.md and the three PNG plots into ``output_dir``.

  Every file is written to ``<path>.tmp`` and then moved into place.

  Args:
    study: The run's results.
    output_dir: Directory to write into; created if missing.
    title: Title of the markdown report.

  Returns:
    The paths written: report.md, accuracy.png, maj_at_k.png,
    calibration.png.
  """
  pngs = _write_plots(study, output_dir)
  parts = [f'# {title}', '', '## Accuracy (%)', '',
           format_markdown_table(study), '',
           '## Self-consistency gap (points)', '',
           format_gap_markdown(study), '']
  for heading, note, table in (
      ('Headline checks (paper §4)', 'The last LMSI round against the base; '
       '"holds" when LMSI is at least as accurate.',
       format_headline_markdown(study)),
      ('Self-consistency by sampling temperature (%)', '"main": the '
       'temperature of the tables above; "best": the best by the largest k '
       '(chosen on this split, so never a main number).',
       format_sweep_markdown(study)),
      ('Reasoning styles', 'Share of each style; in brackets, the accuracy '
       'of the paths of that style (%).', format_styles_markdown(study))):
    if table:
      parts += [f'## {heading}', '', note, '', table, '']
  parts += ['## Calibration', '',
            'Accuracy of the majority answer by its vote share.', '']
  for name, result in arms(study):
    if result.calibration:
      parts += [f'### {name}', '',
                tables.calibration_markdown(result.calibration), '']
  parts += ['## Plots', '']
  parts += [f'![{os.path.basename(p)}]({os.path.basename(p)})' for p in pngs]
  report = os.path.join(output_dir, 'report.md')
  fileio.write_text_atomic(report, '\n'.join(parts) + '\n')
  return [report] + pngs
