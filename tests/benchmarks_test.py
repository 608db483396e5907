"""Benchmark tasks over the real release files, and over TFDS (mocked).

Reads $LMSI_DATA_DIR, default the repository's ../shared/data; skips with a
reason when that directory is absent.
"""

import collections
import json
import os
import tempfile

import pytest

from lmsi.data import answers
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import inputs
from lmsi.data import prompts
from lmsi.data import taskspec
from tests.conftest import SHARED_DATA

DATA = os.environ.get('LMSI_DATA_DIR') or SHARED_DATA
pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(DATA, 'gsm8k')),
    reason=f'benchmark release files not found at {DATA} (set LMSI_DATA_DIR)')

# Official sizes (PROVENANCE.md): task -> split -> rows.
COUNTS = {
    'lmsi_gsm8k_v1': {'train': 7473, 'test': 1319},
    'lmsi_arc_challenge_v1': {'train': 1119, 'validation': 299, 'test': 1172},
    'lmsi_arc_easy_v1': {'train': 2251, 'validation': 570, 'test': 2376},
    'lmsi_openbookqa_v1': {'train': 4957, 'validation': 500, 'test': 500},
    'lmsi_anli_r1_v1': {'validation': 1000, 'test': 1000},
    'lmsi_anli_r2_v1': {'validation': 1000, 'test': 1000},
    'lmsi_anli_r3_v1': {'validation': 1200, 'test': 1200},
}
SPLIT_FILE = {'train': 'Train', 'validation': 'Dev', 'test': 'Test'}


def release_file(builder: str, config: str | None, split: str) -> str:
  """The release file a TFDS builder config reads for `split`."""
  low = SPLIT_FILE[split].lower()
  return {
      'gsm8k': f'{DATA}/gsm8k/{split}.jsonl',
      'ai2_arc': f'{DATA}/arc/{config}/{config}-{SPLIT_FILE[split]}.jsonl',
      'openbookqa': f'{DATA}/openbookqa/Additional/{low}_complete.jsonl',
      'anli': f'{DATA}/anli/{(config or "").upper()}/{low}.jsonl',
  }[builder]


def raw_rows(builder, config, split):
  with open(release_file(builder, config, split), encoding='utf-8') as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def rows():
  """Every split of every benchmark task, from the release files."""
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  mixtures.register(DATA)
  return {t: {s: inputs.load_split(t, s) for s in splits}
          for t, splits in COUNTS.items()}


def test_official_row_counts(rows):
  got = {t: {s: len(r) for s, r in splits.items()}
         for t, splits in rows.items()}
  assert got == COUNTS


def test_every_gold_answer_parses(rows):
  from tasks import releases  # pylint: disable=g-import-not-at-top
  for task, splits in rows.items():
    family = taskspec.spec(task).family
    for split, split_rows in splits.items():
      bad = []
      for r in split_rows:
        options = prompts.options_of(r['question'])
        text = f'The answer is {answers.answer_text(r["answer"], family)}.'
        if (answers.canonical_answer(r['answer'], family) != r['answer'] or
            answers.extract_answer(text, family, options=options)
            != r['answer']):
          bad.append(r['id'])
      assert not bad, f'{task}:{split}: {len(bad)} bad gold, e.g. {bad[:3]}'
      assert len({r['id'] for r in split_rows}) == len(split_rows)


def test_options_round_trip_and_arc_quirks(rows):
  """Options parse back out of the question; labels 1-5 are letters A-E."""
  sizes = collections.Counter()
  for config, task in (('ARC-Challenge', 'lmsi_arc_challenge_v1'),
                       ('ARC-Easy', 'lmsi_arc_easy_v1')):
    for split in SPLIT_FILE:
      by_id = {r['id']: r for r in rows[task][split]}
      for raw in raw_rows('ai2_arc', config, split):
        row = by_id[raw['id']]
        choices = raw['question']['choices']
        assert prompts.options_of(row['question']) == tuple(
            c['text'].strip() for c in choices)
        labels = [c['label'] for c in choices]
        assert row['answer'] == 'ABCDE'[labels.index(raw['answerKey'])]
        sizes[(len(choices), labels[0].isdigit())] += 1
  # Both quirks occur: 3 and 5 options, numeric labels.
  assert {(3, False), (4, False), (5, False), (4, True), (3, True)} <= set(
      sizes)
  for split in SPLIT_FILE:
    for row in rows['lmsi_openbookqa_v1'][split]:
      assert len(prompts.options_of(row['question'])) == 4


def test_gsm8k_answers_and_rationales():
  from tasks import gsm8k  # pylint: disable=g-import-not-at-top
  commas = 0
  for raw in raw_rows('gsm8k', None, 'train'):
    gold = gsm8k.final_answer(raw['answer'])
    commas += ',' in raw['answer'].rsplit('#### ', 1)[1]
    cot = gsm8k.rationale(raw['answer'])
    assert '<<' not in cot and '####' not in cot and '\n' not in cot
    assert cot.endswith(f'The answer is {gold}.')
    assert answers.extract_answer(cot) == gold
  assert commas == 79  # "#### 1,080" -> "1080"
  assert gsm8k.final_answer('x\n#### 1,080') == '1080'


def test_anli_labels_and_pool_note(rows):
  from tasks import releases  # pylint: disable=g-import-not-at-top
  raw = raw_rows('anli', 'r2', 'test')
  want = {'e': 'entailment', 'n': 'neutral', 'c': 'contradiction'}
  by_id = {r['id']: r for r in rows['lmsi_anli_r2_v1']['test']}
  for r in raw:
    row = by_id[r['uid']]
    assert row['answer'] == want[r['label']]
    assert row['question'] == prompts.nli_question(r['context'],
                                                   r['hypothesis'])
  spec = taskspec.spec('lmsi_anli_r3_pool_v1')
  assert spec.pool_of == ('lmsi_anli_r3_v1', 'validation')
  assert 'dev' in spec.note
  family, exemplars, notes = taskspec.task_settings('lmsi_anli_r3_pool_v1')
  assert family == answers.Family.NLI and len(exemplars) == 6
  assert notes['pool_of'] == {'task': 'lmsi_anli_r3_v1',
                              'split': 'validation'}
  assert 'dev split' in notes['pool_note']  # copied into run manifests


def test_pools_hold_no_gold(rows):  # rows: the tasks are registered
  del rows
  pool = inputs.load_split('lmsi_arc_challenge_pool_v1', 'train')
  assert len(pool) == 1119 and set(pool[0]) == {'id', 'question'}
  assert sorted(inputs.member_tasks('lmsi_multitask_pool_v1')) == [
      'lmsi_anli_r2_pool_v1', 'lmsi_anli_r3_pool_v1',
      'lmsi_arc_challenge_pool_v1', 'lmsi_gsm8k_pool_v1',
      'lmsi_openbookqa_pool_v1']
  assert sorted(inputs.member_tasks('lmsi_multitask_eval_v1')) == [
      'lmsi_anli_r2_v1', 'lmsi_anli_r3_v1', 'lmsi_arc_challenge_v1',
      'lmsi_gsm8k_v1', 'lmsi_openbookqa_v1']


def test_seqio_metric(rows):
  import seqio  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task('lmsi_arc_challenge_v1')
  examples = rows['lmsi_arc_challenge_v1']['test'][:4]
  options = [prompts.options_of(e['question']) for e in examples]
  outputs = [f'So the answer is {options[0][1]}.',
             'The answer is (b).', 'I do not know.', 'The answer is C)']
  preds = [task.postprocess_fn(o, example=e) for o, e in zip(outputs,
                                                             examples)]
  golds = [task.postprocess_fn(e['answer'], is_target=True)
           for e in examples]
  assert preds[0] == 'B' and preds[2] is None and preds[3] == 'C'
  want = 100 * sum(p == g for p, g in zip(preds, golds)) / 4
  assert task.metric_fns[0](golds, preds) == {'accuracy': want}


def test_exemplars_come_from_the_releases(rows):
  """Exemplar questions are verbatim, answers are gold, GSM8K's rationales
  are the official solutions."""
  from tasks import gsm8k  # pylint: disable=g-import-not-at-top
  from tasks import releases  # pylint: disable=g-import-not-at-top
  sources = {'gsm8k': ('lmsi_gsm8k_v1', 'train', 8),
             'arc': ('lmsi_arc_challenge_v1', 'train', 4),
             'openbookqa': ('lmsi_openbookqa_v1', 'train', 4),
             'anli': ('lmsi_anli_r1_v1', 'validation', 6)}
  solutions = {r['question']: r['answer']
               for r in raw_rows('gsm8k', None, 'train')}
  for name, (task, split, num) in sources.items():
    family = taskspec.spec(task).family
    gold = {r['question']: r['answer'] for r in rows[task][split]}
    exemplars = exemplars_lib.get(name)
    assert len(exemplars) == num
    for ex in exemplars:
      assert ex.question in gold, (name, ex.question[:60])
      assert ex.answer == answers.answer_text(gold[ex.question], family)
      options = prompts.options_of(ex.question)
      assert answers.extract_answer(ex.reasoning, family,
                                    options=options) == gold[ex.question]
      assert ex.reasoning.endswith(f'The answer is {ex.answer}.')
      if name == 'gsm8k':
        assert ex.reasoning == gsm8k.rationale(solutions[ex.question])
    assert len({ex.answer for ex in exemplars}) >= min(num, 3)


def test_bad_files_are_named():
  from tasks import anli  # pylint: disable=g-import-not-at-top
  from tasks import gsm8k  # pylint: disable=g-import-not-at-top
  from tasks import openbookqa  # pylint: disable=g-import-not-at-top
  with pytest.raises(FileNotFoundError, match=r'/nope.*gsm8k/\{train,test\}'):
    gsm8k.register('/nope')
  with tempfile.TemporaryDirectory() as tmp:
    with pytest.raises(FileNotFoundError, match=r'gsm8k/train.jsonl is miss'):
      gsm8k.register(tmp)
    root = os.path.join(tmp, 'openbookqa', 'Additional')
    os.makedirs(root)
    for split in ('train', 'dev', 'test'):
      lines = open(release_file('openbookqa', None, 'test' if split == 'test'
                                else 'validation')).readlines()[:3]
      bad = json.loads(lines[2])
      bad['humanScore'] = 'n/a'
      with open(os.path.join(root, f'{split}_complete.jsonl'), 'w') as f:
        f.writelines(lines[:2] + [json.dumps(bad) + '\n'])
    openbookqa.register(tmp)
    with pytest.raises(ValueError, match=r"train_complete.jsonl:3: field "
                       r"'humanScore' must be a number"):
      inputs.load_split(openbookqa.TASK, 'train')
    with pytest.raises(ValueError, match='unknown benchmark source'):
      anli.register(tmp, source='hf')
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  mixtures.register(DATA)  # restore for other tests in this process


def _sample_lines(path: str, arc: bool, keep: int = 100) -> list[str]:
  """The first `keep` lines, plus every ARC line with a quirk (labels 1-5,
  3 or 5 options)."""
  with open(path, encoding='utf-8') as f:
    lines = f.readlines()
  quirky = [l for l in lines[keep:] if arc and (
      '"label":"1"' in l or l.count('"label":') != 4)]
  return lines[:keep] + quirky


def _tfds_examples(name: str, splits, tmp: str) -> dict:
  """Serialized examples that the real TFDS builder code makes from (a
  sample of) the release files, its `_generate_examples`, reversed as TFDS
  reorders examples."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(name, data_dir=tmp)
  config = builder.builder_config.name if builder.builder_config else None
  out = {}
  for split in splits:
    src = os.path.join(tmp, f'{name.replace("/", "_")}_{split}.jsonl')
    with open(src, 'w', encoding='utf-8') as f:
      f.writelines(_sample_lines(release_file(builder.name, config, split),
                                 arc=builder.name == 'ai2_arc'))
    generate = builder._generate_examples  # pylint: disable=protected-access
    if builder.name == 'gsm8k':
      gen = generate(path=src)
    elif builder.name == 'openbookqa':
      gen = generate(data_dir=tmp, filepath=src)
    else:
      gen = generate(filepath=src)
    out[(builder.name, config, split)] = [
        builder.info.features.serialize_example(ex) for _, ex in gen][::-1]
  return out


def test_tfds_source_gives_identical_rows(rows, tmp_path):
  """Offline: tfds.testing.mock_data serves what the builders would store."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tfds = pytest.importorskip('tensorflow_datasets')
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  builders = {'gsm8k': 'lmsi_gsm8k_v1',
              'ai2_arc/ARC-Challenge': 'lmsi_arc_challenge_v1',
              'ai2_arc/ARC-Easy': 'lmsi_arc_easy_v1',
              'openbookqa': 'lmsi_openbookqa_v1',
              'anli/r1': 'lmsi_anli_r1_v1', 'anli/r2': 'lmsi_anli_r2_v1',
              'anli/r3': 'lmsi_anli_r3_v1'}
  stored = {}
  for name, task in builders.items():
    stored.update(_tfds_examples(name, COUNTS[task], str(tmp_path)))

  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    del decoders, read_config, kwargs
    config = self.builder_config.name if self.builder_config else None
    return tf.data.Dataset.from_tensor_slices(
        stored[(self.name, config, str(split))]).map(
            self.info.features.deserialize_example)

  compared = 0
  try:
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
      mixtures.register(source='tfds', tfds_data_dir=str(tmp_path / 'tfds'))
      for task, splits in COUNTS.items():
        for split in splits:
          got = inputs.load_split(task, split)
          want = {r['id']: r for r in rows[task][split]}
          assert [r['id'] for r in got][-1] == rows[task][split][0]['id']
          assert got == [want[r['id']] for r in got], (task, split)
          compared += len(got)
  finally:
    mixtures.register(DATA)
  assert compared > 1900


def test_rendered_prompts_have_the_paper_shape(rows):
  for task, name in (('lmsi_gsm8k_v1', 'gsm8k'),
                     ('lmsi_arc_challenge_v1', 'arc'),
                     ('lmsi_openbookqa_v1', 'openbookqa'),
                     ('lmsi_anli_r2_v1', 'anli')):
    q = rows[task][next(iter(COUNTS[task]))][0]['question']
    exemplars = exemplars_lib.get(name)
    cot = prompts.render(prompts.Format.COT_FEWSHOT, q, exemplars)
    direct = prompts.render(prompts.Format.DIRECT_FEWSHOT, q, exemplars)
    assert cot.count('Q: ') == direct.count('Q: ') == len(exemplars) + 1
    assert cot.endswith(f'Q: {q}\nA:') and direct.endswith(f'Q: {q}\nA:')
    for ex in exemplars:  # direct = CoT with the reasoning removed
      assert f'A: {ex.reasoning}\n\n' in cot
      assert f'A: The answer is {ex.answer}.\n\n' in direct
    assert prompts.render(prompts.Format.COT_ZEROSHOT, q) == (
        f"Q: {q}\nA: Let's think step by step.")
    assert prompts.render(prompts.Format.DIRECT_ZEROSHOT, q) == f'Q: {q}\nA:'
    assert '\n\n' not in q


GOLDEN_PROMPTS = os.path.join(os.path.dirname(__file__), 'testdata',
                              'benchmark_prompts.txt')


def test_rendered_prompts_match_golden(rows, tmp_path):
  del rows  # registered
  dump_prompts(str(tmp_path / 'prompts.txt'))
  with open(GOLDEN_PROMPTS, encoding='utf-8') as f:
    want = f.read()
  assert (tmp_path / 'prompts.txt').read_text(encoding='utf-8') == want, (
      f'prompts changed; if intended, regenerate {GOLDEN_PROMPTS} (see '
      'tests/testdata/README.md) and bump the task versions')


def dump_prompts(path: str) -> None:
  """Writes one example of each task in each format (a golden)."""
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  mixtures.register(DATA)
  out = []
  for task, name in (('lmsi_gsm8k_v1', 'gsm8k'),
                     ('lmsi_arc_challenge_v1', 'arc'),
                     ('lmsi_openbookqa_v1', 'openbookqa'),
                     ('lmsi_anli_r2_v1', 'anli')):
    row = inputs.load_split(task, 'test')[0]  # not an exemplar
    for fmt in prompts.Format:
      text = prompts.render(fmt, row['question'], exemplars_lib.get(name))
      out.append(f'===== {task} {row["id"]} {fmt.value} =====\n{text}\n')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(out))


if __name__ == '__main__':
  dump_prompts(os.environ.get('OUT', GOLDEN_PROMPTS))
