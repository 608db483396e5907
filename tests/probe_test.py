"""The self-consistency gap probe: ks, gap and verdict logic, and the binary
end to end on the arithmetic task (orbax dir + gin model, and artifact)."""

import dataclasses
import json
import os

import gin
import pytest

from lmsi.checkpoints import artifact as artifact_lib
from lmsi.checkpoints import load
from lmsi.checkpoints import store as checkpoints
from lmsi.runtime import gin_flags
from lmsi.runtime import manifests
from lmsi.evaluation import gap_probe as probe
from tests.conftest import REPO


def test_ks_are_powers_of_two_then_m():
  assert probe.ks_up_to(1) == (1,)
  assert probe.ks_up_to(4) == (1, 2, 4)
  assert probe.ks_up_to(16) == (1, 2, 4, 8, 16)
  assert probe.ks_up_to(12) == (1, 2, 4, 8, 12)
  assert probe.ks_up_to(3) == (1, 2, 3)
  with pytest.raises(ValueError, match='>= 1'):
    probe.ks_up_to(0)


def test_gap_above_threshold_has_room():
  acc = {'greedy_cot': 0.50, 'maj@1': 0.44, 'maj@2': 0.50, 'maj@4': 0.56}
  out = probe.gap(acc, 4)
  assert out['gap_points'] == pytest.approx(6.0)
  assert out['has_gap'] and out['best_k'] == 4
  assert out['verdict'] == ('maj@4 - greedy = 6.0 points: LMSI has room to '
                            'help')


def test_gap_below_threshold_is_no_gap():
  acc = {'greedy_cot': 0.50, 'maj@1': 0.40, 'maj@2': 0.48, 'maj@4': 0.52}
  out = probe.gap(acc, 4)
  assert not out['has_gap'] and out['gap_points'] == pytest.approx(2.0)
  assert out['verdict'] == ('no gap (maj@4 - greedy = 2.0 points): LMSI will '
                            'not help this model on this task')
  assert probe.gap(acc, 4, threshold=1.5)['has_gap']
  # A model worse with votes than greedy: negative gap, no gap.
  worse = probe.gap({'greedy_cot': 0.6, 'maj@1': 0.5}, 1)
  assert not worse['has_gap'] and worse['gap_points'] == pytest.approx(-10.0)
  assert 'no gap (maj@1 - greedy = -10.0 points)' in worse['verdict']


def test_gap_exactly_at_threshold_and_best_k():
  # 100 * (0.06 - 0.03) is 2.9999999999999996 in floats: still 3 points.
  acc = {'greedy_cot': 0.03, 'maj@1': 0.03, 'maj@2': 0.07, 'maj@4': 0.07,
         'maj@8': 0.09, 'maj@12': 0.06}
  out = probe.gap(acc, 12)
  assert out['has_gap'] and out['gap_points'] == 3.0
  assert out['best_k'] == 8 and out['best_gap_points'] == pytest.approx(6.0)
  tie = probe.gap({'greedy_cot': 0.0, 'maj@1': 0.1, 'maj@2': 0.2,
                   'maj@4': 0.2}, 4)
  assert tie['best_k'] == 2  # the smallest k reaching the best
  with pytest.raises(ValueError, match='need greedy_cot and maj@16'):
    probe.gap(acc, 16)


def test_a_gap_of_one_or_two_questions_is_too_few_to_tell():
  acc = {'greedy_cot': 1 / 30, 'maj@8': 2 / 30}  # +3.3 points, 1 question
  assert probe.gap(acc, 8)['has_gap']
  small = probe.gap(acc, 8, num_questions=30)
  assert not small['has_gap']
  assert 'only 1 of 30 questions: too few to tell' in small['verdict']
  big = probe.gap({'greedy_cot': 0.1, 'maj@8': 0.2}, 8, num_questions=30)
  assert big['has_gap'] and 'room to help' in big['verdict']


def test_bootstrap_interval_is_paired_and_deterministic():
  greedy = [0, 1] * 50
  # The same questions right and wrong: every resample's gap is exactly 0.
  assert probe.bootstrap_gap(greedy, greedy) == (0.0, 0.0)
  better = [1, 1] * 50  # +50 points on average
  lo, hi = probe.bootstrap_gap(greedy, better)
  assert 35 < lo < 50 < hi < 65
  assert probe.bootstrap_gap(greedy, better) == (lo, hi)
  with pytest.raises(ValueError, match='equal'):
    probe.bootstrap_gap([1, 0], [1])


def test_a_gap_whose_interval_reaches_zero_is_not_shown():
  acc = {'greedy_cot': 0.30, 'maj@8': 0.36}
  shown = probe.gap(acc, 8, num_questions=200, interval=(1.5, 10.5))
  assert shown['has_gap'] and shown['gap_interval_points'] == [1.5, 10.5]
  assert '95% interval [+1.5, +10.5]' in shown['verdict']
  not_shown = probe.gap(acc, 8, num_questions=200, interval=(-0.5, 12.0))
  assert not not_shown['has_gap']
  assert 'reaches 0: not shown' in not_shown['verdict']


def test_arithmetic_data_dir_must_hold_the_splits(tmp_path):
  from tasks import mixtures  # pylint: disable=g-import-not-at-top
  (tmp_path / 'test.jsonl').write_text('')
  with pytest.raises(FileNotFoundError, match=r"lacks \['seed.jsonl'"):
    mixtures.registered('lmsi_arith_v1', data_dir=str(tmp_path))


def _run(flags):
  gin.clear_config()
  try:
    return gin_flags.main('lmsi.probe', 'probe_task',
                          output_dir_arg='output_dir', argv=flags)
  finally:
    gin.clear_config()


def _check_outputs(out, ks, result):
  got = json.load(open(out / 'probe.json'))
  assert got == json.loads(json.dumps(result))
  assert got['task'] == 'lmsi_arith_v1' and got['split'] == 'test'
  assert got['n'] == 8 and got['m'] == ks[-1] and got['ks'] == list(ks)
  assert sorted(k for k in got if k.startswith('maj@')) == sorted(
      f'maj@{k}' for k in ks)
  assert 'direct' not in got
  evaluated = json.load(open(out / 'eval.json'))['accuracy']
  assert got['greedy'] == evaluated['greedy_cot']
  assert got['gap_points'] == pytest.approx(
      100 * (got[f'maj@{ks[-1]}'] - got['greedy']))
  assert got['verdict'].startswith(('no gap (maj@', f'maj@{ks[-1]} - greedy'))
  # has_gap and verdict follow probe.gap on the printed numbers, including
  # "too few to tell" when the gap is worth under MIN_QUESTIONS_GAINED.
  # The interval is the paired bootstrap of eval.json's per-question 0/1s.
  correct = json.load(open(out / 'eval.json'))['correct']
  assert [len(correct[k]) for k in ('greedy_cot', f'maj@{ks[-1]}')] == [8, 8]
  assert sum(correct['greedy_cot']) / 8 == got['greedy']
  assert sum(correct[f'maj@{ks[-1]}']) / 8 == got[f'maj@{ks[-1]}']
  interval = probe.bootstrap_gap(correct['greedy_cot'],
                                 correct[f'maj@{ks[-1]}'])
  assert got['gap_interval_points'] == list(interval)
  assert interval[0] <= got['gap_points'] <= interval[1]
  expected = probe.gap({k: v for k, v in got.items() if k.startswith('maj@')}
                       | {'greedy_cot': got['greedy']}, ks[-1],
                       threshold=got['threshold_points'], num_questions=8,
                       interval=interval)
  assert (got['has_gap'], got['verdict']) == (expected['has_gap'],
                                              expected['verdict'])
  if got['has_gap']:
    assert got['gap_points'] >= got['threshold_points']
  assert sum(b['n'] for b in got['calibration']) == 8
  assert got['seconds'] > 0
  with open(out / 'probe.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  md = (out / 'probe.md').read_text()
  assert got['verdict'] in md and f'| maj@{ks[-1]} |' in md
  assert not [p for p in os.listdir(out) if '.tmp' in p]
  return json.load(open(out / 'probe_manifest.json'))


def test_probe_binary_on_arithmetic(trained_tiny, tiny_cfg, tmp_path, capsys):
  root, params = trained_tiny
  data = root / 'data'
  common = ['--gin.TASK="lmsi_arith_v1"', f'--gin.DATA_DIR="{data}"',
            '--gin.MAX_QUESTIONS=8', '--gin.MAX_DECODE_STEPS=48']
  # An orbax model dir: model config and vocabulary from gin.
  out = tmp_path / 'orbax'
  result = _run([
      f'--gin_file={REPO}/gin/testing/tiny.gin',
      f'--gin_file={REPO}/gin/runs/probe.gin', *common,
      '--gin.NUM_SAMPLES=4', f'--gin.VOCABULARY="{data}/vocab.json"',
      f'--gin.INITIAL_CHECKPOINT_PATH="{root}/model"',
      f'--gin.OUTPUT_DIR="{out}"'])
  manifest = _check_outputs(out, (1, 2, 4), result)
  printed = capsys.readouterr().out
  assert result['verdict'] in printed and '| greedy_cot |' in printed
  params_dir = checkpoints.params_path(str(root / 'model'))
  inputs = {i['path']: i['sha256'] for i in manifest['inputs']}
  assert inputs[params_dir] == manifests.tree_sha256(params_dir)
  assert str(data / 'test.jsonl') in inputs
  assert manifest['checkpoint_kind'] == 'orbax'
  assert manifest['config']['ks'] == [1, 2, 4]
  assert manifest['answer_family'] == 'number'
  assert manifest['exemplars'] == 'arithmetic'

  # The same weights as an artifact: config and vocabulary come from it.
  art = tmp_path / 'art'
  artifact_lib.save(str(art), params=params, model_config=tiny_cfg,
                    vocab_file=str(data / 'vocab.json'), manifest={})
  out = tmp_path / 'artifact'
  result = _run([
      f'--gin_file={REPO}/gin/models/artifact.gin',
      f'--gin_file={REPO}/gin/runs/probe.gin', *common,
      '--gin.NUM_SAMPLES=3', f'--gin.INITIAL_CHECKPOINT_PATH="{art}"',
      f'--gin.OUTPUT_DIR="{out}"', '--gin.GAP_THRESHOLD=-100.0'])
  manifest = _check_outputs(out, (1, 2, 3), result)
  assert result['threshold_points'] == -100.0  # the gin binding reached it
  meta = json.load(open(art / artifact_lib.META_FILE))
  inputs = {i['path']: i['sha256'] for i in manifest['inputs']}
  assert inputs[str(art / artifact_lib.PARAMS_FILE)] == meta['sha256'][
      artifact_lib.PARAMS_FILE]
  assert manifest['checkpoint_kind'] == 'artifact'

  # A gin model config that is not the artifact's is refused.
  with pytest.raises(ValueError, match='MODEL_CONFIG differs'):
    load.load_model(str(art), dataclasses.replace(tiny_cfg, vocab_size=600),
                    None)
