"""Binary: the demo's pretrained model, trained to convergence and shipped.

The paper starts from a pretrained LM; so does the demo. `make demo-base`
runs `build`: it writes the embedded arithmetic task, trains the base model
on the labeled seed split (all four formats) with warmup + cosine decay to
zero, records its held-out (seed_dev) greedy-CoT accuracy along the way, and
writes an `lmsi.checkpoints.artifact` directory (safetensors, config,
vocabulary, manifest with digests) that is committed to the repo. `make demo`
starts from that artifact (`lmsi.pipeline`, `base_artifact`).

The data helpers here (`prepare_data`, `train_base`) are shared with the
pipeline, which can still train a base itself (tests, the chaos bench).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping

from lmsi.demo import arithmetic
from lmsi.checkpoints import artifact
from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.evaluation import evaluator as evaluate_lib
from lmsi.data import exemplars as exemplars_lib
from lmsi.runtime import gin_flags
from lmsi.data import inputs
from lmsi.runtime import manifests
from lmsi.data import prompts
from lmsi.sampling import generation as sampling
from lmsi.data import taskspec
from lmsi.trainer import trainer as train_lib
from lmsi.vocab import simple as vocab_lib
from lmsi.vocab import base as vocab_base

SEED_FILE = 'seed.jsonl'


def prepare_data(data_dir: str, data: arithmetic.DataConfig
                 ) -> tuple[str, vocab_base.Vocabulary]:
  """Writes the splits (seed/seed_dev easy, unlabeled/test hard) and
  registers the arithmetic tasks over them (`import tasks.arithmetic`).

  Returns:
    (vocab.json path, the vocabulary).

  Raises:
    LookupError: if no arithmetic task builder is registered.
  """
  register = taskspec.builder(taskspec.ARITHMETIC).register
  exemplars = exemplars_lib.get('arithmetic', data.num_exemplars)
  arithmetic.write_splits(
      data_dir, dict(data.split_sizes), data.difficulties(),
      [prompts.render(f, '', exemplars) for f in prompts.Format],
      style_weights=tuple(tuple(w) for w in data.style_weights))
  register(data_dir, data.num_exemplars)
  vocab_path = os.path.join(data_dir, arithmetic.VOCAB_FILE)
  return vocab_path, vocab_lib.load(vocab_path)


def train_base(
    model_dir: str, *, model_config: decoder_lib.DecoderConfig,
    vocab: vocab_base.Vocabulary,
    settings: train_lib.TrainSettings, plateau: train_lib.Plateau | None,
    task_feature_lengths: Mapping[str, int], seed: int,
    num_exemplars: int | None, max_decode_steps: int,
) -> train_lib.TrainResult:
  """Trains on the seed mixture, evaluating seed_dev greedy CoT as it goes."""
  arith = taskspec.builder(taskspec.ARITHMETIC)
  seed_dev = inputs.load_split(arith.task, 'seed_dev')
  exemplars = exemplars_lib.get('arithmetic', num_exemplars)
  greedy = evaluate_lib.EvalConfig(
      methods=('greedy_cot',), sampling=sampling.SamplingConfig(
          max_decode_steps=max_decode_steps, seed=seed))

  def dev_accuracy(params):
    return evaluate_lib.evaluate(
        model_config=model_config, params=params, examples=seed_dev,
        exemplars=exemplars, config=greedy, vocab=vocab, desc='seed_dev'
    )['accuracy']['greedy_cot']

  return train_lib.train_with(
      settings, model_config=model_config,
      mixture_or_task_name=arith.mixture,
      task_feature_lengths=task_feature_lengths, model_dir=model_dir,
      seed=seed, plateau=plateau, eval_fn=dev_accuracy if plateau else None)


def build(
    *,
    output_dir: str,
    artifact_dir: str,
    model_config: decoder_lib.DecoderConfig,
    seed: int = 0,
    data: arithmetic.DataConfig,
    task_feature_lengths: Mapping[str, int],
    train: train_lib.TrainSettings,
    eval_period: int = 500,
    max_decode_steps: int = 48,
) -> dict:
  """Trains the demo base under `output_dir` and writes `artifact_dir`.

  `eval_period` steps between seed_dev evaluations (recorded, never used to
  stop: the cosine schedule decides the length). Returns artifact.json.
  """
  t0 = time.monotonic()
  data_dir = os.path.join(output_dir, 'data')
  vocab_path, vocab = prepare_data(data_dir, data)
  vocab_lib.check_model_vocab(vocab, model_config.vocab_size, vocab_path)
  model_dir = os.path.join(output_dir, 'base')
  # Evaluations only record the curve: min_steps past the end never stops.
  record = train_lib.Plateau(eval_period=eval_period, patience=1,
                             min_steps=train.steps + 1)
  result = train_base(
      model_dir, model_config=model_config, vocab=vocab, settings=train,
      plateau=record, task_feature_lengths=task_feature_lengths, seed=seed,
      num_exemplars=data.num_exemplars, max_decode_steps=max_decode_steps)
  params = checkpoints.restore_params(model_config, model_dir)
  manifest = manifests.stage_manifest(
      [os.path.join(data_dir, SEED_FILE), vocab_path],
      seed=seed, **data.manifest(),
      task_feature_lengths=dict(task_feature_lengths),
      train=dataclasses.asdict(train),
      final_step=result.step, final_loss=result.loss,
      seed_dev_greedy_cot=result.evals,
      train_seconds=round(time.monotonic() - t0, 1))
  artifact.save(artifact_dir, params=params, model_config=model_config,
                vocab_file=vocab_path, manifest=manifest)
  meta = artifact.read_meta(artifact_dir)
  last = result.evals[-1]['metric'] if result.evals else float('nan')
  print(f'demo-base: {meta["num_params"]:,} parameters, step {result.step}, '
        f'seed_dev greedy CoT {100 * last:.1f}%, '
        f'{time.monotonic() - t0:.0f} s -> {artifact_dir} '
        f'(sha256 {meta["sha256"][artifact.PARAMS_FILE][:12]})')
  return meta


def check_data(meta: dict, data_dir: str) -> None:
  """Raises unless `data_dir`'s seed split and vocabulary are the ones the
  artifact's base was trained on (the control arm trains on that split)."""
  want = {os.path.basename(i['path']): i['sha256']
          for i in meta['manifest']['inputs']}
  for name in (SEED_FILE, arithmetic.VOCAB_FILE):
    got = manifests.file_sha256(os.path.join(data_dir, name))
    if want.get(name) != got:
      raise ValueError(
          f'{os.path.join(data_dir, name)} (sha256 {got[:12]}) is not the '
          f'file the base artifact was trained on ({str(want.get(name))[:12]})'
          ': the demo data settings (arithmetic.DataConfig: split_sizes, '
          'difficulties, style_weights, num_exemplars) must match the '
          'base\'s '
          '(gin/data/demo.gin)')


if __name__ == '__main__':
  gin_flags.main('lmsi.demo.base', 'build', output_dir_arg='output_dir')
