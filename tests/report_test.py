"""Tests for lmsi.studies.report."""

import json
import os
import tempfile

from absl.testing import absltest

from lmsi.studies import readme as readme_lib
from lmsi.studies import report
from lmsi.studies import results

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _calibration(accuracy: float | None) -> list[dict[str, object]]:
  return [
      {'vote_share_lo': 0.0, 'vote_share_hi': 0.5, 'n': 0, 'accuracy': None},
      {'vote_share_lo': 0.5, 'vote_share_hi': 1.0, 'n': 4,
       'accuracy': accuracy},
  ]


def _metrics() -> dict[str, object]:
  return {
      'config': {'model': 'tiny'},
      'timings': {'total_s': 1.0},
      'rounds': [
          {'round': 0,
           'accuracy': {'direct': 0.21, 'greedy_cot': 0.27, 'maj@16': 0.35,
                        'maj@4': 0.3},
           'calibration': _calibration(0.5)},
          {'round': 1,
           'accuracy': {'direct': 0.25, 'greedy_cot': 0.3, 'maj@4': 0.4,
                        'maj@16': 0.45},
           'calibration': _calibration(0.75)},
      ],
      'control': {'accuracy': {'direct': 0.2, 'greedy_cot': 0.28,
                               'maj@4': 0.31},
                  'calibration': _calibration(0.25)},
  }


def _study(metrics):
  return results.StudyResult.from_json(metrics)


class ReportTest(absltest.TestCase):

  def test_arms_order(self):
    metrics = _metrics()
    metrics['no_vote'] = {'accuracy': {'direct': 0.1}, 'calibration': []}
    names = [name for name, _ in report.arms(_study(metrics))]
    self.assertEqual(names, ['base', 'LMSI r1', 'control', 'no-vote'])

  def test_format_table_exact(self):
    lines = report.format_table(_study(_metrics())).split('\n')
    self.assertLen(lines, 4)
    self.assertEqual(lines[0], 'arm      direct  greedy_cot  maj@4  maj@16')
    self.assertEqual(lines[1], 'base       21.0        27.0   30.0    35.0')
    self.assertEqual(lines[2], 'LMSI r1    25.0        30.0   40.0    45.0')
    self.assertEqual(lines[3], 'control    20.0        28.0   31.0       -')

  def test_maj_sorted_numerically(self):
    header = report.format_table(_study(_metrics())).split('\n')[0]
    self.assertLess(header.index('maj@4'), header.index('maj@16'))
    md_header = report.format_markdown_table(_study(_metrics())).split('\n')[0]
    self.assertEqual(
        md_header, '| arm | direct | greedy_cot | maj@4 | maj@16 |')

  def test_missing_method_is_dash(self):
    metrics = _metrics()
    del metrics['rounds'][1]['accuracy']['direct']
    row = report.format_table(_study(metrics)).split('\n')[2]
    self.assertEqual(row.split()[:3], ['LMSI', 'r1', '-'])
    md_rows = report.format_markdown_table(_study(metrics)).split('\n')
    self.assertEqual(md_rows[3], '| LMSI r1 | - | 30.0 | 40.0 | 45.0 |')
    self.assertEqual(md_rows[4], '| control | 20.0 | 28.0 | 31.0 | - |')

  def test_write_report(self):
    metrics = _metrics()
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, 'report')
      paths = report.write_report(_study(metrics), out, title='Tiny run')
      names = sorted(os.path.basename(p) for p in paths)
      self.assertEqual(names, ['accuracy.png', 'calibration.png',
                               'maj_at_k.png', 'report.md'])
      self.assertEqual(sorted(os.listdir(out)), names)
      with open(os.path.join(out, 'report.md'), encoding='utf-8') as f:
        text = f.read()
      self.assertTrue(text.startswith('# Tiny run\n'))
      self.assertIn(report.format_markdown_table(_study(metrics)), text)
      self.assertIn('![accuracy.png](accuracy.png)', text)
      self.assertIn('| 0.50-1.00 | 4 | 75.0 |', text)
      for name in ('accuracy.png', 'maj_at_k.png', 'calibration.png'):
        with open(os.path.join(out, name), 'rb') as f:
          self.assertEqual(f.read(8), _PNG_SIGNATURE)
      self.assertEmpty([n for n in os.listdir(out) if '.tmp' in n])


  def test_arms_lists_ablation_arms_and_students_in_order(self):
    metrics = _metrics()
    metrics['no_vote'] = {'accuracy': {'direct': 0.1}}
    metrics['arms'] = {'cot only': {'accuracy': {'greedy_cot': 0.29}},
                       'direct only': {'accuracy': {'greedy_cot': 0.26}}}
    metrics['students'] = {
        'tiny-2L': {'before': {'accuracy': {'greedy_cot': 0.05}},
                    'after': {'accuracy': {'greedy_cot': 0.33}}}}
    names = [name for name, _ in report.arms(_study(metrics))]
    self.assertEqual(names, ['base', 'LMSI r1', 'control', 'no-vote',
                             'cot only', 'direct only', 'tiny-2L before',
                             'tiny-2L after'])
    lines = report.format_table(_study(metrics)).split('\n')
    self.assertEqual(lines[5].split(), ['cot', 'only', '-', '29.0', '-', '-'])
    self.assertEqual(lines[8].split(), ['tiny-2L', 'after', '-', '33.0', '-',
                                        '-'])
    self.assertIn('| tiny-2L before | - | 5.0 | - | - |',
                  report.format_markdown_table(_study(metrics)))

  def test_old_metrics_render_unchanged(self):
    # Empty `arms` / `students` add no row; no sweep, no sweep section.
    metrics = _metrics()
    plain = (report.format_table(_study(metrics)),
             report.format_markdown_table(_study(metrics)),
             report.format_gap_markdown(_study(metrics)))
    metrics.update(arms={}, students={})
    self.assertEqual((report.format_table(_study(metrics)),
                      report.format_markdown_table(_study(metrics)),
                      report.format_gap_markdown(_study(metrics))), plain)
    self.assertEqual(report.format_sweep_markdown(_study(metrics)), '')
    self.assertEqual(
        report.headline_checks(_study({'rounds': metrics['rounds'][:1]})),
                     [])
    self.assertEqual(report.format_headline_markdown(_study({})), '')

  def test_headline_checks_hold_and_fail(self):
    base = {'greedy_cot': 0.50, 'maj@1': 0.45, 'maj@5': 0.60, 'maj@16': 0.68,
            'maj@32': 0.70}
    good = {'greedy_cot': 0.71, 'maj@5': 0.72, 'maj@16': 0.74}
    bad = {'greedy_cot': 0.65, 'maj@5': 0.70, 'maj@16': 0.73}
    metrics = {'rounds': [{'accuracy': base}, {'accuracy': bad},
                          {'accuracy': good}]}
    checks = report.headline_checks(_study(metrics))  # the last round: r2
    self.assertEqual(checks, [
        {'check': 'LMSI greedy CoT vs base maj@16', 'arm': 'LMSI r2',
         'lhs': 0.71, 'rhs': 0.68, 'holds': True},
        {'check': 'LMSI maj@5 vs base maj@32', 'arm': 'LMSI r2',
         'lhs': 0.72, 'rhs': 0.70, 'holds': True}])
    metrics['rounds'].pop()
    self.assertEqual([(c['arm'], c['holds'])
                      for c in report.headline_checks(_study(metrics))],
                     [('LMSI r1', False), ('LMSI r1', True)])  # 0.70 >= 0.70
    bad['maj@5'] = 0.69
    md = report.format_headline_markdown(_study(metrics)).split('\n')
    self.assertEqual(
        md[0], '| check | LMSI arm | LMSI | base | points | holds |')
    self.assertEqual(md[2], '| LMSI greedy CoT vs base maj@16 | LMSI r1 | '
                     '65.0 | 68.0 | -3.0 | no |')
    self.assertEqual(md[3], '| LMSI maj@5 vs base maj@32 | LMSI r1 | 69.0 | '
                     '70.0 | -1.0 | no |')

  def test_headline_without_maj32_names_the_k_used(self):
    checks = report.headline_checks(_study(_metrics()))
    self.assertEqual(checks[0]['check'], 'LMSI greedy CoT vs base maj@16')
    self.assertEqual((checks[0]['lhs'], checks[0]['rhs'], checks[0]['holds']),
                     (0.3, 0.35, False))
    # No maj@32 in the base: its largest k, named; LMSI has no maj@5.
    self.assertEqual(checks[1], {
        'check': 'LMSI maj@5 vs base maj@16 (base has no maj@32: its '
                 'largest k)', 'arm': 'LMSI r1', 'lhs': None, 'rhs': 0.35,
        'holds': None})
    self.assertIn('| - | 35.0 | - | not measured |',
                  report.format_headline_markdown(_study(_metrics())))

  def test_report_has_headline_and_sweep_sections(self):
    metrics = _metrics()
    metrics['rounds'][1].update(temperature=0.7, sweep={
        '0.7': {'maj@1': 0.3, 'maj@4': 0.4},
        '1.2': {'maj@1': 0.25, 'maj@4': 0.5}}, sweep_best={
            'temperature': 1.2, 'k': 4, 'accuracy': 0.5})
    sweep = report.format_sweep_markdown(_study(metrics)).split('\n')
    self.assertEqual(sweep, ['| arm | T | maj@1 | maj@4 |',
                             '|---|---:|---:|---:|',
                             '| LMSI r1 | 0.7 (main) | 30.0 | 40.0 |',
                             '| LMSI r1 | 1.2 (best) | 25.0 | 50.0 |'])
    with tempfile.TemporaryDirectory() as tmp:
      report.write_report(_study(metrics), tmp)
      with open(os.path.join(tmp, 'report.md'), encoding='utf-8') as f:
        text = f.read()
    headline = text.index('## Headline checks (paper §4)')
    self.assertLess(text.index('## Self-consistency gap'), headline)
    self.assertLess(headline, text.index('## Self-consistency by sampling'))
    self.assertIn(report.format_headline_markdown(_study(metrics)), text)
    self.assertIn('\n'.join(sweep), text)

  def test_update_readme_replaces_only_its_block(self):
    run = tempfile.mkdtemp()
    for name, value in (('metrics.json', _metrics()),
                        ('timings.json', {'total': 301.4}),
                        ('manifest.json', {'git_revision': 'abcdef0123456789'})):
      with open(os.path.join(run, name), 'w') as f:
        json.dump(value, f)
    readme = os.path.join(run, 'README.md')
    with open(readme, 'w') as f:
      f.write(f'intro\n{readme_lib.README_BEGIN}\nstale 50.7\n'
              f'{readme_lib.README_END}\noutro\n')
    readme_lib.update_readme(readme, run)
    text = open(readme).read()
    self.assertTrue(text.startswith(f'intro\n{readme_lib.README_BEGIN}\n'))
    self.assertTrue(text.endswith(f'{readme_lib.README_END}\noutro\n'))
    self.assertNotIn('stale', text)
    self.assertIn('301 s, git abcdef012345', text)
    self.assertIn(report.format_markdown_table(_study(_metrics())), text)
    # maj@16 - greedy: base 35 - 27, LMSI r1 45 - 30 (control has no maj@16).
    self.assertIn('in points: base +8.0, LMSI r1 +15.0.', text)
    readme_lib.update_readme(readme, run)  # idempotent: one block stays one
    self.assertEqual(open(readme).read(), text)
    with open(readme, 'w') as f:
      f.write('no block here\n')
    with self.assertRaisesRegex(ValueError, 'no .* block to replace'):
      readme_lib.update_readme(readme, run)

  def test_repo_readme_has_the_demo_block(self):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(here, 'README.md'), encoding='utf-8').read()
    begin = text.index(readme_lib.README_BEGIN)
    self.assertLess(begin, text.index(readme_lib.README_END))
    self.assertIn('| base |', text[begin:text.index(readme_lib.README_END)])

if __name__ == '__main__':
  absltest.main()
