"""The README's Python example (examples/sample_and_vote.py) runs, and the
README shows it as it is."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

EXAMPLE = os.path.join('examples', 'sample_and_vote.py')


def _code(path: str) -> str:
  """The file without its docstring: what the README shows."""
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    text = f.read()
  return text.split('"""', 2)[2].strip()


def test_readme_shows_the_example():
  with open(os.path.join(REPO, 'README.md'), encoding='utf-8') as f:
    readme = f.read()
  assert f'```python\n{_code(EXAMPLE)}\n```' in readme


def test_example_samples_and_votes():
  out = subprocess.run([sys.executable, EXAMPLE], cwd=REPO, check=True,
                       capture_output=True, text=True, timeout=300)
  lines = out.stdout.strip().splitlines()
  assert lines[0].startswith('path 0 of 16: ')
  # The demo base answers this question by vote (gold: 5).
  assert lines[1].startswith('majority answer 5: '), lines
