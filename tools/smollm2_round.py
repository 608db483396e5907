"""One LMSI round on SmolLM2-135M through the stage binaries, timed per stage.

convert (GGUF -> orbax) -> sample (GSM8K train questions x m CoT paths, no
gold) -> aggregate (vote, four formats) -> train (a few fine-tuning steps on
the self-generated mixture) -> evaluate (GSM8K test: direct, greedy CoT,
maj@m) for the base and the fine-tuned model. Each stage is the same command
a researcher runs; re-running resumes (finished stages are skipped).

    python tools/smollm2_round.py [--questions=4] [--samples=4] [--steps=3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import common  # pylint: disable=wrong-import-position


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument('--questions', type=int, default=4)
  parser.add_argument('--samples', type=int, default=4)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--max_decode_steps', type=int, default=160)
  parser.add_argument('--out', default=os.path.join(REPO, 'runs',
                                                    'smollm2_round'))
  args = parser.parse_args()
  common.require('tools/smollm2_round.py',
                 data=('gsm8k/train.jsonl', 'gsm8k/test.jsonl'), gguf=True)
  data = os.path.abspath(common.data_dir())
  ckpt = os.path.join(REPO, 'checkpoints', 'smollm2_135m')
  tok = os.path.join(ckpt, 'tokenizer.json')
  out = args.out
  model = ['--gin_file=gin/models/smollm2_135m.gin', f'--gin.DATA_DIR="{data}"']
  decode = [f'--gin.NUM_SAMPLES={args.samples}',
            f'--gin.MAX_DECODE_STEPS={args.max_decode_steps}',
            f'--gin.VOCABULARY="{tok}"']

  def evaluate(name, checkpoint):
    return (f'evaluate {name}', [
        '-m', 'lmsi.evaluate', *model, '--gin_file=gin/runs/eval.gin',
        '--gin.TASK="lmsi_gsm8k_v1"', f'--gin.MAX_QUESTIONS={args.questions}',
        f'--gin.INITIAL_CHECKPOINT_PATH="{checkpoint}"', *decode,
        f'--gin.OUTPUT_DIR="{out}/{name}/eval"'])

  stages = [
      ('convert', ['-m', 'lmsi.convert', '--from=smollm2', f'--to={ckpt}']),
      ('sample', [
          '-m', 'lmsi.sample', *model, '--gin_file=gin/runs/sample.gin',
          '--gin.TASK="lmsi_gsm8k_pool_v1"',
          f'--gin.MAX_QUESTIONS={args.questions}',
          f'--gin.INITIAL_CHECKPOINT_PATH="{ckpt}"', *decode,
          f'--gin.OUTPUT_DIR="{out}/r1/samples"']),
      ('aggregate', [
          '-m', 'lmsi.aggregate', '--gin_file=gin/runs/aggregate.gin',
          '--gin.TASK="lmsi_gsm8k_pool_v1"', f'--gin.DATA_DIR="{data}"',
          f'--gin.SAMPLES_DIR="{out}/r1/samples"',
          f'--gin.OUTPUT_DIR="{out}/r1/selfgen"']),
      ('train', [
          '-m', 'lmsi.train', '--gin_file=gin/models/smollm2_135m.gin',
          '--gin_file=gin/runs/finetune.gin',
          f'--gin.SELFGEN_FILE="{out}/r1/selfgen/selfgen.jsonl"',
          '--gin.SELFGEN_DATASET="gsm8k"', f'--gin.SELFGEN_VOCABULARY="{tok}"',
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 1024, 'targets': 256}",
          f'--gin.TRAIN_STEPS={args.steps}', '--gin.BATCH_SIZE=2',
          f'--gin.MODEL_DIR="{out}/r1/model"',
          f'--gin.INITIAL_CHECKPOINT_PATH="{ckpt}"']),
      evaluate('base', ckpt),
      evaluate('r1', f'{out}/r1/model'),
  ]
  env = {**os.environ, 'PYTHONPATH': REPO, 'TF_CPP_MIN_LOG_LEVEL': '3'}
  os.makedirs(out, exist_ok=True)
  rows = []
  with open(os.path.join(out, 'log.txt'), 'a') as log:
    for name, cmd in stages:
      print(f'$ python {" ".join(cmd)}', flush=True)
      t0 = time.monotonic()
      subprocess.run([sys.executable, *cmd], cwd=REPO, env=env, check=True,
                     stdout=log, stderr=subprocess.STDOUT)
      rows.append((name, time.monotonic() - t0))
      print(f'  {name}: {rows[-1][1]:.1f} s', flush=True)
  manifest = json.load(open(f'{out}/r1/selfgen/aggregate_manifest.json'))
  print(f'\nSmolLM2-135M, {args.questions} GSM8K questions x {args.samples} '
        f'paths, {args.steps} fine-tuning steps (2-core CPU)')
  print(f'{"stage":<18} {"seconds":>8}')
  for name, seconds in rows:
    print(f'{name:<18} {seconds:>8.1f}')
  print('self-generated:', json.dumps(manifest.get('counts', manifest))[:400])
  for name in ('base', 'r1'):
    acc = json.load(open(f'{out}/{name}/eval/eval.json'))['accuracy']
    print(f'{name} accuracy on {args.questions} GSM8K test questions: {acc}')


if __name__ == '__main__':
  main()
