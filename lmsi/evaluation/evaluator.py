"""Accuracy on a labeled split (LMSI stage 7; the only gold reader).

Three ways of prompting (paper §4): direct few-shot (greedy), greedy CoT
(few-shot CoT, temperature 0), and self-consistency maj@k over m sampled CoT
paths for each k in `ks` <= m (the first k samples). Calibration: accuracy
of the majority answer per vote-share bin (paper Fig. 2). Optionally the
self-consistency paths are also drawn at each temperature of a sweep (the
paper reports the best of 0.7, 1.0, 1.2 and 1.5 after LMSI); the main
accuracy stays the configured temperature's, so no number picks its
temperature on the test split.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from lmsi.voting import match as answer_match_lib
from lmsi.data import answers as answers_lib
from lmsi.model import decoder as decoder_lib
from lmsi.runtime import manifests
from lmsi.data import prompts
from lmsi.runtime import fileio
from lmsi.sampling import generation as sampling_lib
from lmsi.checkpoints import load
from lmsi.sampling import batched as stage
from lmsi.data import taskspec
from lmsi.vocab import base as vocab_base
from lmsi.voting import majority as voting

# maj@5 next to maj@32: the paper's headline "LMSI maj@5 beats base maj@32".
DEFAULT_KS = (1, 4, 5, 8, 16, 32)
# Paper §4 (as the self-consistency paper): T in {0.7, 1.0, 1.2, 1.5}, best
# reported. Not the default `temperature_sweep`: it quadruples sampling.
SWEEP_TEMPERATURES = (0.7, 1.0, 1.2, 1.5)
METHODS = ('direct', 'greedy_cot', 'self_consistency')


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig:
  """What evaluation runs. Paper: T 0.7 before LMSI, 1.2 after.

  `sampling` draws the self-consistency paths (m = its num_samples); greedy
  CoT and direct prompting decode at temperature 0 with its seed, step limit
  and stop strings (direct: `direct_decode_steps`).

  `answer_match` names the answer rules (`answer_match.MODES`; one name may
  be given as a string): the first extracts the vote and the main accuracy;
  eval.json's `accuracy_by_match` has direct and greedy CoT under each.

  `temperature_sweep` (e.g. SWEEP_TEMPERATURES; empty: off) also draws the
  self-consistency paths at each temperature, with the same seed, m and
  top-k; eval.json gets `sweep` and `sweep_best` (`best_of_sweep`).
  """

  sampling: sampling_lib.SamplingConfig = dataclasses.field(
      default_factory=sampling_lib.SamplingConfig)
  direct_decode_steps: int = 32
  ks: tuple[int, ...] = DEFAULT_KS
  methods: tuple[str, ...] = METHODS
  batch_rows: int = 2048  # questions x samples per device batch
  answer_match: tuple[str, ...] = (answer_match_lib.PAPER,)
  temperature_sweep: tuple[float, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, 'answer_match',
                       answer_match_lib.validate_modes(self.answer_match))
    sweep = tuple(float(t) for t in self.temperature_sweep)
    if any(t <= 0 for t in sweep) or len(set(sweep)) != len(sweep):
      raise ValueError(
          f'EvalConfig.temperature_sweep: expected distinct temperatures '
          f'> 0 (e.g. {SWEEP_TEMPERATURES}), got {self.temperature_sweep!r}')
    object.__setattr__(self, 'temperature_sweep', sweep)

  @property
  def num_samples(self) -> int:
    return self.sampling.num_samples

  def greedy(self) -> sampling_lib.SamplingConfig:
    """The temperature-0 single-path config of greedy CoT."""
    return dataclasses.replace(self.sampling, num_samples=1, temperature=0.0)

  def with_seed(self, seed: int) -> EvalConfig:
    return dataclasses.replace(
        self, sampling=dataclasses.replace(self.sampling, seed=seed))


def evaluate(
    *,
    model_config: decoder_lib.DecoderConfig,
    params: Any,
    examples: Sequence[Mapping[str, str]],
    exemplars: Sequence[prompts.Exemplar],
    config: EvalConfig,
    vocab: vocab_base.Vocabulary,
    answer_family: str = 'number',
    output_dir: str | None = None,
    desc: str = 'eval',
) -> dict:
  """Evaluates on labeled `examples` ({id, question, answer}).

  Returns:
    {"accuracy": {"direct", "greedy_cot", "maj@k"...}, "calibration": [...],
     "num_questions": N, "answer_match": first mode, "accuracy_by_match":
     {mode: {"direct", "greedy_cot"}}, "temperature": the sampling T of
     maj@k, "correct": {"greedy_cot", "direct", "maj@m": [0/1 per
     question]} (paired intervals: `gap_probe.bootstrap_gap`); with a sweep
     also "sweep": {"0.7": {"maj@k"...}, ...} and
     "sweep_best" (`best_of_sweep`). Also written to `output_dir/eval.json`;
     predictions.jsonl holds the configured temperature's paths.

  Raises:
    ValueError: if `config.answer_match` has an lm-eval mode and the answer
      family is not "number".
  """
  modes = answer_match_lib.validate_modes(config.answer_match, answer_family)
  out_path = output_dir and os.path.join(output_dir, 'eval.json')
  if out_path and fileio.is_complete(out_path):
    with open(out_path, encoding='utf-8') as f:
      return json.load(f)
  ids = [e['id'] for e in examples]
  gold = [answers_lib.normalize_number(e['answer'])
          if answer_family == 'number' else e['answer'] for e in examples]

  prefixes = {}

  def run(fmt, cfg):
    texts = [prompts.render(fmt, e['question'], exemplars) for e in examples]
    if fmt not in prefixes:  # the exemplar block, prefilled once per format
      tokens = stage.exemplar_prefix(vocab, exemplars, fmt)
      prefixes[fmt] = tokens and sampling_lib.prefix_for(model_config, params,
                                                     tokens)
    return stage.sample_prompts(
        model_config, params, texts, ids, cfg, vocab=vocab,
        batch_questions=max(1, config.batch_rows // cfg.num_samples),
        desc=f'{desc} {fmt.value} x{cfg.num_samples}' + (
            f' T={cfg.temperature}' if cfg.temperature else ''),
        prefix=prefixes[fmt] or None)

  options = [prompts.options_of(e['question']) for e in examples]

  def parse(text, opts):
    return answer_match_lib.extract(text, modes[0], answer_family,
                                    options=opts)

  def correct(pred, g):
    return answer_match_lib.is_correct(pred, g, modes[0], answer_family)

  def golds(mode):  # lm-eval scores the task's own answer string
    return gold if mode == answer_match_lib.PAPER else [
        e['answer'] for e in examples]

  vote_gold = golds(modes[0])

  greedy = config.greedy()
  n = max(len(examples), 1)
  acc = {}
  direct = cot = [[('', 0.0)]] * len(examples)  # methods not run
  if 'direct' in config.methods:
    direct = run(prompts.Format.DIRECT_FEWSHOT, dataclasses.replace(
        greedy, max_decode_steps=config.direct_decode_steps))
  if 'greedy_cot' in config.methods:
    cot = run(prompts.Format.COT_FEWSHOT, greedy)
  by_match = {}
  for mode in modes:
    by_match[mode] = {
        method: answer_match_lib.accuracy(
            [p[0][0] for p in paths], golds(mode), mode, answer_family,
            options)
        for method, paths in (('direct', direct), ('greedy_cot', cot))
        if method in config.methods}
  acc.update(by_match[modes[0]])  # the first mode is the main accuracy
  per_question = {
      method: [int(correct(parse(p[0][0], o), g))
               for p, o, g in zip(paths, options, vote_gold)]
      for method, paths in (('direct', direct), ('greedy_cot', cot))
      if method in config.methods}
  result = {'accuracy': acc, 'num_questions': len(examples),
            'answer_match': modes[0], 'accuracy_by_match': by_match,
            'correct': per_question}
  answers = [[] for _ in examples]
  sampled = [[] for _ in examples]

  def maj_at_ks(cfg):  # -> (paths, answers, {"maj@k": accuracy})
    paths = run(prompts.Format.COT_FEWSHOT, cfg)
    parsed = [[parse(t, o) for t, _ in p] for p, o in zip(paths, options)]
    return paths, parsed, {
        f'maj@{k}': sum(correct(voting.majority_at_k(a, k), g)
                        for a, g in zip(parsed, vote_gold)) / n
        for k in config.ks if k <= config.num_samples}

  if 'self_consistency' in config.methods:
    sampled, answers, maj = maj_at_ks(config.sampling)
    acc.update(maj)
    result['temperature'] = config.sampling.temperature
    if config.temperature_sweep:
      # The configured temperature's paths are reused, not drawn twice.
      result['sweep'] = {
          str(t): maj if t == config.sampling.temperature else maj_at_ks(
              dataclasses.replace(config.sampling, temperature=t))[2]
          for t in config.temperature_sweep}
      result['sweep_best'] = best_of_sweep(result['sweep'])
  votes = [voting.majority_vote(a) for a in answers]
  if 'self_consistency' in config.methods:
    per_question[f'maj@{config.num_samples}'] = [
        int(correct(voting.majority_at_k(a, config.num_samples), g))
        for a, g in zip(answers, vote_gold)]
    result['calibration'] = voting.calibration_bins(
        [v.share for v in votes],
        [correct(v.answer, g) for v, g in zip(votes, vote_gold)])
  if out_path:
    fileio.write_jsonl(os.path.join(output_dir, 'predictions.jsonl'), [
        Prediction(id=i, gold=g, direct=d[0][0], greedy_cot=c[0][0],
                    majority=v.answer, vote_share=round(v.share, 4),
                    answers=a, paths=[t for t, _ in s])
        for i, g, d, c, v, a, s in zip(ids, gold, direct, cot, votes, answers,
                                       sampled)])
    fileio.write_json(out_path, result)  # with its marker
  return result


def best_of_sweep(sweep: Mapping[str, Mapping[str, float]]) -> dict | None:
  """The sweep's best temperature by its largest k's maj@k.

  Args:
    sweep: {str(temperature): {"maj@k": accuracy}}, as in eval.json.

  Returns:
    {"temperature": T, "k": K, "accuracy": maj@K at T}, K the largest k
    every temperature has; ties go to the lowest T. None if no maj@k.
  """
  common = set.intersection(*[
      {int(key[4:]) for key in maj if key.startswith('maj@')}
      for maj in sweep.values()]) if sweep else set()
  if not common:
    return None
  k = max(common)
  t = min(sweep, key=lambda t: (-sweep[t][f'maj@{k}'], float(t)))
  return {'temperature': float(t), 'k': k, 'accuracy': sweep[t][f'maj@{k}']}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prediction:
  """One test question's answers by each method (predictions.jsonl)."""

  id: str
  gold: str | None
  direct: str
  greedy_cot: str
  majority: str | None
  vote_share: float
  answers: list[str | None]  # of the m sampled paths, in sample order
  paths: list[str]  # the m sampled paths' texts


def evaluate_task(
    *,
    model_config: decoder_lib.DecoderConfig,
    checkpoint_path: str,
    task_name: str,
    split: str,
    output_dir: str,
    config: EvalConfig,
    vocabulary: str = 'bytes',
    exemplars: str | None = None,
    num_exemplars: int | None = None,
    answer_family: str | None = None,
    max_questions: int | None = None,
    param_dtype: str = 'float32',
) -> dict:
  """Binary body: evaluates a checkpoint on a labeled task split.

  Writes eval.json, predictions.jsonl and eval_manifest.json to
  `output_dir`; a finished evaluation is not redone.
  """
  loaded = load.load_model(checkpoint_path, model_config, vocabulary,
                           param_dtype)
  model_config, params, vocab = loaded.config, loaded.params, loaded.vocab
  family, exemplar_set, notes, examples = taskspec.load_task(
      task_name, split, exemplars=exemplars, num_exemplars=num_exemplars,
      answer_family=answer_family, max_questions=max_questions)
  fileio.write_json(
      os.path.join(output_dir, 'eval_manifest.json'),
      manifests.stage_manifest(
          loaded.inputs, **notes,
          split=split, num_questions=len(examples),
          checkpoint=checkpoint_path, vocabulary=vocabulary,
          param_dtype=param_dtype, config=dataclasses.asdict(config)))
  return evaluate(model_config=model_config, params=params,
                  examples=examples, exemplars=exemplar_set, config=config,
                  vocab=vocab, answer_family=family.value,
                  output_dir=output_dir, desc=f'eval {task_name}')
