"""Tests for lmsi.report."""

import json
import os
import tempfile

from absl.testing import absltest

from lmsi import report

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


class ReportTest(absltest.TestCase):

  def test_arms_order(self):
    metrics = _metrics()
    metrics['no_vote'] = {'accuracy': {'direct': 0.1}, 'calibration': []}
    names = [name for name, _ in report.arms(metrics)]
    self.assertEqual(names, ['base', 'LMSI r1', 'control', 'no-vote'])

  def test_format_table_exact(self):
    lines = report.format_table(_metrics()).split('\n')
    self.assertLen(lines, 4)
    self.assertEqual(lines[0], 'arm      direct  greedy_cot  maj@4  maj@16')
    self.assertEqual(lines[1], 'base       21.0        27.0   30.0    35.0')
    self.assertEqual(lines[2], 'LMSI r1    25.0        30.0   40.0    45.0')
    self.assertEqual(lines[3], 'control    20.0        28.0   31.0       -')

  def test_maj_sorted_numerically(self):
    header = report.format_table(_metrics()).split('\n')[0]
    self.assertLess(header.index('maj@4'), header.index('maj@16'))
    md_header = report.format_markdown_table(_metrics()).split('\n')[0]
    self.assertEqual(
        md_header, '| arm | direct | greedy_cot | maj@4 | maj@16 |')

  def test_missing_method_is_dash(self):
    metrics = _metrics()
    del metrics['rounds'][1]['accuracy']['direct']
    row = report.format_table(metrics).split('\n')[2]
    self.assertEqual(row.split()[:3], ['LMSI', 'r1', '-'])
    md_rows = report.format_markdown_table(metrics).split('\n')
    self.assertEqual(md_rows[3], '| LMSI r1 | - | 30.0 | 40.0 | 45.0 |')
    self.assertEqual(md_rows[4], '| control | 20.0 | 28.0 | 31.0 | - |')

  def test_write_report(self):
    metrics = _metrics()
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, 'report')
      paths = report.write_report(metrics, out, title='Tiny run')
      names = sorted(os.path.basename(p) for p in paths)
      self.assertEqual(names, ['accuracy.png', 'calibration.png',
                               'maj_at_k.png', 'report.md'])
      self.assertEqual(sorted(os.listdir(out)), names)
      with open(os.path.join(out, 'report.md'), encoding='utf-8') as f:
        text = f.read()
      self.assertTrue(text.startswith('# Tiny run\n'))
      self.assertIn(report.format_markdown_table(metrics), text)
      self.assertIn('![accuracy.png](accuracy.png)', text)
      self.assertIn('| 0.50-1.00 | 4 | 75.0 |', text)
      for name in ('accuracy.png', 'maj_at_k.png', 'calibration.png'):
        with open(os.path.join(out, name), 'rb') as f:
          self.assertEqual(f.read(8), _PNG_SIGNATURE)
      self.assertEmpty([n for n in os.listdir(out) if '.tmp' in n])


  def test_update_readme_replaces_only_its_block(self):
    run = tempfile.mkdtemp()
    for name, value in (('metrics.json', _metrics()),
                        ('timings.json', {'total': 301.4}),
                        ('manifest.json', {'git_revision': 'abcdef0123456789'})):
      with open(os.path.join(run, name), 'w') as f:
        json.dump(value, f)
    readme = os.path.join(run, 'README.md')
    with open(readme, 'w') as f:
      f.write(f'intro\n{report.README_BEGIN}\nstale 50.7\n'
              f'{report.README_END}\noutro\n')
    report.update_readme(readme, run)
    text = open(readme).read()
    self.assertTrue(text.startswith(f'intro\n{report.README_BEGIN}\n'))
    self.assertTrue(text.endswith(f'{report.README_END}\noutro\n'))
    self.assertNotIn('stale', text)
    self.assertIn('301 s, git abcdef012345', text)
    self.assertIn(report.format_markdown_table(_metrics()), text)
    # maj@16 - greedy: base 35 - 27, LMSI r1 45 - 30 (control has no maj@16).
    self.assertIn('in points: base +8.0, LMSI r1 +15.0.', text)
    report.update_readme(readme, run)  # idempotent: one block stays one
    self.assertEqual(open(readme).read(), text)
    with open(readme, 'w') as f:
      f.write('no block here\n')
    with self.assertRaisesRegex(ValueError, 'no .* block to replace'):
      report.update_readme(readme, run)

  def test_repo_readme_has_the_demo_block(self):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(here, 'README.md'), encoding='utf-8').read()
    begin = text.index(report.README_BEGIN)
    self.assertLess(begin, text.index(report.README_END))
    self.assertIn('| base |', text[begin:text.index(report.README_END)])

if __name__ == '__main__':
  absltest.main()
