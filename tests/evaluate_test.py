"""lmsi.evaluate: the paper's protocol knobs (ks with maj@5, the temperature
sweep), the sweep's best-temperature rule, and the sweep on a tiny model."""

import dataclasses
import json

import pytest

from lmsi.evaluation import evaluator as evaluate
from lmsi.data import exemplars as exemplars_lib
from lmsi.data import prompts
from lmsi.sampling import generation as sampling
from lmsi.sampling import batched as stage


def test_paper_protocol_constants():
  assert 5 in evaluate.DEFAULT_KS and max(evaluate.DEFAULT_KS) == 32
  assert evaluate.SWEEP_TEMPERATURES == (0.7, 1.0, 1.2, 1.5)
  config = evaluate.EvalConfig()
  assert config.temperature_sweep == ()  # off: the sweep quadruples cost
  assert config.sampling.temperature == 0.7  # paper §4, before LMSI


def test_sweep_is_validated_and_normalised():
  config = evaluate.EvalConfig(temperature_sweep=[1, 0.7])  # gin: a list
  assert config.temperature_sweep == (1.0, 0.7)
  assert all(isinstance(t, float) for t in config.temperature_sweep)
  for bad in ((0.7, 0.0), (0.7, 0.7), (-1.0,)):
    with pytest.raises(ValueError, match='temperature_sweep: expected '
                       'distinct temperatures > 0'):
      evaluate.EvalConfig(temperature_sweep=bad)


def test_best_of_sweep_uses_the_largest_common_k_then_lowest_t():
  sweep = {'0.7': {'maj@1': 0.9, 'maj@4': 0.5},
           '1.0': {'maj@1': 0.1, 'maj@4': 0.75},
           '1.2': {'maj@1': 0.2, 'maj@4': 0.75}}
  assert evaluate.best_of_sweep(sweep) == {
      'temperature': 1.0, 'k': 4, 'accuracy': 0.75}
  # Insertion order does not decide a tie: the lowest temperature does.
  assert evaluate.best_of_sweep(dict(reversed(list(sweep.items()))))[
      'temperature'] == 1.0
  # k = 4 is missing at one temperature: the largest k all have is 1.
  sweep['1.5'] = {'maj@1': 0.95}
  assert evaluate.best_of_sweep(sweep) == {
      'temperature': 1.5, 'k': 1, 'accuracy': 0.95}
  assert evaluate.best_of_sweep({}) is None
  assert evaluate.best_of_sweep({'0.7': {}}) is None


_EXAMPLES = [{'id': f'q{i}', 'question': f'Q{i}?', 'answer': str(i)}
             for i in range(4)]
# Right answers per temperature (of 4 questions): 1.2 is the best, and the
# configured 0.7 is neither the best nor the worst.
_RIGHT = {0.0: 1, 0.7: 2, 1.0: 1, 1.2: 3, 1.5: 3}


def _fake_sampling(monkeypatch):
  """A sampler without a model whose accuracy depends on the temperature;
  returns the list of temperatures it was asked to sample at."""
  monkeypatch.setattr(stage, 'exemplar_prefix', lambda *a, **k: [])
  calls = []

  def sample_prompts(model_config, params, texts, ids, cfg, **kwargs):
    del model_config, params, texts, kwargs
    if cfg.num_samples > 1:
      calls.append(cfg.temperature)
    right = _RIGHT[cfg.temperature]
    return [[(f'The answer is {i[1:] if int(i[1:]) < right else 99}.', 0.0)]
            * cfg.num_samples for i in ids]

  monkeypatch.setattr(stage, 'sample_prompts', sample_prompts)
  return calls


def _evaluate(tmp_path, sweep, temperature=0.7):
  config = evaluate.EvalConfig(
      ks=(1, 2), temperature_sweep=sweep, sampling=sampling.SamplingConfig(
          num_samples=2, temperature=temperature))
  return evaluate.evaluate(
      model_config=None, params=None, examples=_EXAMPLES,
      exemplars=[prompts.Exemplar(question='What is 2 + 2?',
                                  reasoning='2 + 2 = 4. The answer is 4.',
                                  answer='4')],
      config=config, vocab=None, output_dir=str(tmp_path))


def test_sweep_reports_each_t_and_keeps_the_configured_main(
    monkeypatch, tmp_path):
  calls = _fake_sampling(monkeypatch)
  out = _evaluate(tmp_path / 'sweep', evaluate.SWEEP_TEMPERATURES)
  assert calls == [0.7, 1.0, 1.2, 1.5]  # 0.7's paths are drawn once
  assert out['sweep'] == {
      '0.7': {'maj@1': 0.5, 'maj@2': 0.5},
      '1.0': {'maj@1': 0.25, 'maj@2': 0.25},
      '1.2': {'maj@1': 0.75, 'maj@2': 0.75},
      '1.5': {'maj@1': 0.75, 'maj@2': 0.75}}
  assert out['sweep_best'] == {'temperature': 1.2, 'k': 2, 'accuracy': 0.75}
  # No test-set selection in the main number: it is T 0.7's, as configured.
  assert out['temperature'] == 0.7
  assert out['accuracy'] == {'direct': 0.25, 'greedy_cot': 0.25,
                             'maj@1': 0.5, 'maj@2': 0.5}
  with open(tmp_path / 'sweep' / 'eval.json', encoding='utf-8') as f:
    assert json.load(f) == out
  calls.clear()
  plain = _evaluate(tmp_path / 'plain', ())
  assert calls == [0.7] and 'sweep' not in plain
  assert plain['accuracy'] == out['accuracy']
  assert ((tmp_path / 'plain' / 'predictions.jsonl').read_bytes() ==
          (tmp_path / 'sweep' / 'predictions.jsonl').read_bytes())
  # A sweep without the configured temperature samples that one as well.
  calls.clear()
  other = _evaluate(tmp_path / 'other', (1.5, 1.0), temperature=1.2)
  assert calls == [1.2, 1.5, 1.0] and list(other['sweep']) == ['1.5', '1.0']
  assert other['accuracy']['maj@2'] == 0.75
  assert other['sweep_best'] == {'temperature': 1.5, 'k': 2,
                                 'accuracy': 0.75}


def test_sweep_on_a_tiny_model(trained_tiny, tiny_cfg, tmp_path,
                               monkeypatch):
  """Real sampling: the sweep's T 0.7 is the main run's, its T 1.2 equals a
  run configured at 1.2, and the main eval.json accuracy is byte-for-byte
  that of a run without the sweep."""
  import tasks.arithmetic as arith_tasks  # pylint: disable=g-import-not-at-top
  from lmsi.data import inputs  # pylint: disable=g-import-not-at-top
  root, params = trained_tiny
  arith_tasks.register(str(root / 'data'))
  vocab = arith_tasks.vocabulary(str(root / 'data'))
  test = inputs.load_split(arith_tasks.TASK, 'test')[:4]
  base = evaluate.EvalConfig(
      ks=(1, 2, 4, 8), methods=('self_consistency',),
      sampling=sampling.SamplingConfig(num_samples=4, max_decode_steps=48))
  sampled = []
  real = stage.sample_prompts

  def spy(model_config, prm, texts, ids, cfg, **kwargs):
    if cfg.num_samples > 1:
      sampled.append(cfg.temperature)
    return real(model_config, prm, texts, ids, cfg, **kwargs)

  monkeypatch.setattr(stage, 'sample_prompts', spy)

  def run(name, config):
    return evaluate.evaluate(
        model_config=tiny_cfg, params=params, examples=test,
        exemplars=exemplars_lib.get('arithmetic'), config=config,
        vocab=vocab, output_dir=str(tmp_path / name))

  swept = run('swept', dataclasses.replace(base, temperature_sweep=(0.7, 1.2)))
  assert sampled == [0.7, 1.2]
  plain = run('plain', base)
  hot = run('hot', dataclasses.replace(base, sampling=dataclasses.replace(
      base.sampling, temperature=1.2)))
  assert list(swept['sweep']) == ['0.7', '1.2']
  maj = lambda result: {k: v for k, v in result['accuracy'].items()
                        if k.startswith('maj@')}
  assert set(maj(plain)) == {'maj@1', 'maj@2', 'maj@4'}  # 8 > m is skipped
  assert swept['sweep']['0.7'] == maj(plain)
  assert swept['sweep']['1.2'] == maj(hot)
  best = max(swept['sweep'], key=lambda t: (swept['sweep'][t]['maj@4'],
                                            -float(t)))
  assert swept['sweep_best'] == {'temperature': float(best), 'k': 4,
                                 'accuracy': swept['sweep'][best]['maj@4']}
  read = lambda name, file: (tmp_path / name / file).read_bytes()
  assert (json.dumps(json.loads(read('swept', 'eval.json'))['accuracy']) ==
          json.dumps(json.loads(read('plain', 'eval.json'))['accuracy']))
  assert read('swept', 'predictions.jsonl') == read('plain',
                                                    'predictions.jsonl')
