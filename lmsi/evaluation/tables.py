"""Markdown tables of evaluation results (the report's and the probe's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A markdown table: a text column, then right-aligned number columns."""
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
  lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
  return '\n'.join(lines)


def pct(value: float | None) -> str:
  """A fraction as a percentage with one decimal; - for None."""
  return '-' if value is None else f'{100.0 * value:.1f}'


def calibration_markdown(bins: Sequence[dict[str, Any]]) -> str:
  """Accuracy of the majority answer per vote-share bin, as markdown."""
  rows = [[f'{b["vote_share_lo"]:.2f}-{b["vote_share_hi"]:.2f}',
           str(b.get('n', 0)), pct(b.get('accuracy'))] for b in bins]
  return markdown_table(['vote share', 'n', 'accuracy'], rows)
