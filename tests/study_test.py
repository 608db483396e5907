"""The study binary (lmsi.study) through gin/experiments/paper_*.gin.

Every paper file parses, resolves its tasks and keeps the paper's budget;
a dry run of paper_gsm8k.gin with the tiny model on 8 questions (m = 2,
2 fine-tuning steps, short decodes) writes every arm, the report and the
manifest, and resumes. The dry runs are `slow` (84 s for GSM8K). Accuracy is
meaningless here: the tiny model only knows the arithmetic demo.
"""

import dataclasses
import glob
import json
import os

import gin
import pytest

from lmsi.runtime import gin_flags
from lmsi.data import inputs
from lmsi.data import records
from lmsi.studies import benchmark as study
from lmsi.data import taskspec
from lmsi.trainer import trainer as train
from tests.benchmarks_test import DATA
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(
    not os.path.isdir(os.path.join(DATA, 'gsm8k')),
    reason=f'benchmark release files not found at {DATA} (set LMSI_DATA_DIR)')

PAPER_FILES = sorted(os.path.basename(p) for p in glob.glob(
    os.path.join(REPO, 'gin/experiments/paper_*.gin')))
DRY = ['--gin.MAX_QUESTIONS=8', '--gin.MAX_EVAL_QUESTIONS=8',
       '--gin.NUM_SAMPLES=2', '--gin.EVAL_NUM_SAMPLES=2',
       '--gin.MAX_DECODE_STEPS=24', '--gin.TRAIN_STEPS=2',
       '--gin.BATCH_SIZE=8', '--gin.CHECKPOINT_PERIOD=2',
       '--gin.NUM_EXEMPLARS=2', '--gin.BATCH_QUESTIONS=16',
       "--gin.TASK_FEATURE_LENGTHS={'inputs': 1536, 'targets': 32}"]


def _paper(name):
  return os.path.join(REPO, 'gin/experiments', name)


def _model_flags(cfg, root):
  """The tiny model in place of the file's: every DecoderConfig field bound
  (a later model file keeps the fields it does not set)."""
  return ([f'--gin_bindings=decoder.DecoderConfig.{f.name} = '
           f'{getattr(cfg, f.name)!r}' for f in dataclasses.fields(cfg)]
          + [f'--gin.INITIAL_CHECKPOINT_PATH="{root / "model"}"',
             f'--gin.VOCABULARY="{root / "data" / "vocab.json"}"'])


def _run(flags):
  gin.clear_config()
  try:
    return gin_flags.main('lmsi.study', 'run_study', output_dir_arg='output_dir',
                          argv=flags)
  finally:
    gin.clear_config()


@pytest.mark.parametrize('name', PAPER_FILES)
def test_paper_file_resolves_its_tasks_with_the_paper_budget(name):
  gin.clear_config()
  try:
    gin_flags.parse([f'--gin_file={_paper(name)}', f'--gin.DATA_DIR="{DATA}"',
                     '--gin.OUTPUT_DIR="/tmp/unused"'])
    q = lambda n: gin_flags.resolve(gin.query_parameter(n))
    tasks = q('lmsi.study.run_study.tasks')  # registers the benchmarks
    budget = q('lmsi.study.run_study.finetune')
    sampling = q('lmsi.study.run_study.sampling_config')
    before = q('lmsi.study.run_study.eval_before')
    after = q('lmsi.study.run_study.eval_after')
    checkpoint = q('%INITIAL_CHECKPOINT_PATH')
  finally:
    gin.clear_config()
  assert checkpoint == 'checkpoints/smollm2_135m'
  pools = inputs.member_tasks(tasks.pool_task)
  benchmarks = [study.benchmark_of(p)[0] for p in pools]
  for task in [*pools, *tasks.eval_tasks]:
    assert task in taskspec.SPECS, task
  if name == 'paper_ood.gin':  # five in-domain pools, a held-out eval task
    assert len(pools) == 5 and tasks.eval_tasks == ('lmsi_anli_r1_v1',)
    assert not set(tasks.eval_tasks) & set(benchmarks)
  else:
    assert list(tasks.eval_tasks) == benchmarks
  assert tasks.eval_split == 'test' and tasks.max_questions is None
  assert budget == train.TrainSettings(checkpoint_period=1000)
  assert (budget.steps, budget.batch_size, budget.learning_rate,
          budget.optimizer, budget.schedule) == (
              10_000, 32, 5e-5, 'adafactor', 'constant')
  assert (sampling.num_samples, sampling.temperature, sampling.top_k,
          sampling.max_decode_steps) == (32, 0.7, 40, 256)
  assert (before.num_samples, before.sampling.temperature,
          after.sampling.temperature) == (32, 0.7, 1.2)


@pytest.mark.slow  # 84 s here (three 2-step fine-tunes compile per shape)
def test_gsm8k_dry_run_writes_every_arm_and_resumes(trained_tiny, tiny_cfg,
                                                    tmp_path):
  root, _ = trained_tiny
  out = tmp_path / 'study'
  flags = [f'--gin_file={_paper("paper_gsm8k.gin")}',
           *_model_flags(tiny_cfg, root), f'--gin.DATA_DIR="{DATA}"', *DRY,
           f'--gin.OUTPUT_DIR="{out}"']
  metrics = _run(flags)['lmsi_gsm8k_v1']
  assert json.load(open(out / 'metrics.json')) == metrics
  assert len(metrics['rounds']) == 2
  arms = [*metrics['rounds'], metrics['control'], metrics['no_vote']]
  for arm in arms:
    assert 'skipped' not in arm, arm
    assert set(arm['accuracy']) == {'direct', 'greedy_cot', 'maj@1'}
    assert arm['num_questions'] == 8
  for name in ('report.md', 'config.gin', 'timings.json', 'accuracy.png',
               'r1/model/train_done.json', 'control/model/train_done.json',
               'no_vote/model/train_done.json'):
    assert os.path.exists(out / name), name
  assert '| LMSI r1 |' in (out / 'report.md').read_text()
  manifest = json.load(open(out / 'manifest.json'))
  assert manifest['git_revision'] and manifest['gin_config']
  assert manifest['model_config'] == dataclasses.asdict(tiny_cfg)
  kinds = {os.path.basename(i['path']): i['sha256'] for i in manifest['inputs']}
  assert 'vocab.json' in kinds and 'lmsi_gsm8k_pool_v1.jsonl' in kinds
  counts = manifest['counts']
  assert counts['selfgen']['r1']['gsm8k']['samples'] == 16
  assert counts['selfgen']['no_vote']['gsm8k']['samples'] == 16
  assert counts['gold_examples'] == {'gsm8k': 16}  # 8 questions x 2 formats
  assert counts['eval_questions'] == {'lmsi_gsm8k_v1': 8}
  # The control trains on the gold of the pool's own first 8 questions.
  gold = inputs.load_split('lmsi_gsm8k_v1', 'train')[:8]
  rows = list(records.read_jsonl(
      str(out / 'control/gold/lmsi_gsm8k_pool_v1.jsonl'),
      records.SelfGenExample))
  assert [(r.id, r.targets) for r in rows[::2]] == [
      (g['id'], f' The answer is {g["answer"]}.') for g in gold]
  assert {r.format for r in rows} == {'direct_fewshot', 'direct_zeroshot'}
  # The vote's training paths hold pool questions only.
  voted = list(records.read_jsonl(str(out / 'r1/selfgen/selfgen.jsonl'),
                                  records.SelfGenExample))
  assert voted and {v.id for v in voted} <= {g['id'] for g in gold}
  before = (out / 'metrics.json').read_bytes()
  assert _run(flags)['lmsi_gsm8k_v1'] == metrics  # every stage skipped
  assert (out / 'metrics.json').read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize('name', [n for n in PAPER_FILES
                                  if n != 'paper_gsm8k.gin'])
def test_paper_dry_run(name, trained_tiny, tiny_cfg, tmp_path):
  root, _ = trained_tiny
  out = tmp_path / 'study'
  got = _run([f'--gin_file={_paper(name)}', *_model_flags(tiny_cfg, root),
              f'--gin.DATA_DIR="{DATA}"', *DRY, f'--gin.OUTPUT_DIR="{out}"'])
  for task, metrics in got.items():
    where = out if len(got) == 1 else out / task
    assert json.load(open(where / 'metrics.json')) == metrics
    assert os.path.exists(where / 'report.md')
    assert metrics['rounds'][0]['num_questions'] == 8
    assert metrics['control']['num_questions'] == 8  # gold labels: trained
    for arm in (*metrics['rounds'][1:], metrics['no_vote']):
      # The arithmetic model rarely writes a letter or an NLI label: an arm
      # with no kept path is recorded as skipped, not trained.
      assert arm['num_questions'] == 8 or arm['skipped']
  manifest = json.load(open(out / 'manifest.json'))
  assert manifest['pools'] == inputs.member_tasks(manifest['tasks'][
      'pool_task'])
  if len(got) > 1:
    assert json.load(open(out / 'summary.json')) == got
  if name == 'paper_ood.gin':  # one multi-task control over the five pools
    assert len(manifest['counts']['gold_examples']) == 5
