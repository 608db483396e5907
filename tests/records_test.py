"""Atomic JSONL files: markers, resumability and clear errors."""

import pytest

from lmsi.data import records

from lmsi.runtime import fileio


def _q(i):
  return records.Question(task='t', id=f'q{i}', question=f'what {i}?')


def test_roundtrip_and_marker(tmp_path):
  path = str(tmp_path / 'a' / 'q.jsonl')
  assert fileio.write_jsonl(path, [_q(1), _q(2)]) == 2
  assert fileio.is_complete(path)
  assert list(records.read_jsonl(path, records.Question)) == [_q(1), _q(2)]
  assert not list(tmp_path.glob('a/*.tmp*'))


def test_missing_marker_is_an_error(tmp_path):
  path = tmp_path / 'q.jsonl'
  path.write_text(fileio.to_json(_q(1)) + '\n')
  with pytest.raises(FileNotFoundError, match='COMPLETED'):
    list(records.read_jsonl(str(path), records.Question))


@pytest.mark.parametrize('content, message', [
    ('{"task": "t", "id": "q1"\n', r'q.jsonl:1: malformed JSON'),
    ('{"task": "t", "id": "q1"}\n', r"q.jsonl:1: missing field 'question'"),
    ('[1, 2]\n', r'q.jsonl:1: expected a JSON object'),
    ('{"task": "t", "id": "q", "question": "x"}\n{"task": "t"',
     r'q.jsonl:2: truncated line'),
])
def test_bad_lines_name_file_line_and_field(tmp_path, content, message):
  path = tmp_path / 'q.jsonl'
  path.write_text(content)
  (tmp_path / 'q.jsonl.COMPLETED').write_text('')
  with pytest.raises(ValueError, match=message):
    list(records.read_jsonl(str(path), records.Question))
