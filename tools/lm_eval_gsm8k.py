"""lm-evaluation-harness's own `gsm8k_cot` task on an exported model, offline.

lm-eval reads GSM8K from the Hugging Face hub; this runs the same task
config (its 8-shot CoT prompt, greedy decoding, strict-match and
flexible-extract filters, exact_match metric), read from the installed
lm_eval package, with the dataset pointed at the local official test file
(`$LMSI_DATA_DIR/gsm8k/test.jsonl`), through lm-eval's
HF backend on a directory `python -m lmsi.export --format=hf` wrote:

    python tools/lm_eval_gsm8k.py --model_dir=DIR [--limit=8]

Prints lm-eval's exact_match per filter and where the samples went, so a
number from lmsi (`eval.json`'s `accuracy_by_match`, with
`--gin.ANSWER_MATCH=...`) can be put next to lm-eval's on the same model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench import common  # pylint: disable=wrong-import-position


def task_config(test_file: str) -> dict:
  """lm-eval's gsm8k_cot config, reading `test_file` instead of the hub."""
  import lm_eval.tasks  # pylint: disable=g-import-not-at-top
  from lm_eval.tasks import _yaml_loader  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(lm_eval.tasks.__file__), 'gsm8k',
                      'gsm8k-cot.yaml')
  config = _yaml_loader.load_yaml(path)
  config.update(task='gsm8k_cot_local', dataset_path='json',
                dataset_name=None,
                dataset_kwargs={'data_files': {'test': test_file}})
  return config


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model_dir', required=True)
  parser.add_argument('--limit', type=int, default=8)
  parser.add_argument('--batch_size', type=int, default=4)
  args = parser.parse_args()
  common.require('tools/lm_eval_gsm8k.py', data=('gsm8k/test.jsonl',),
                 modules=('lm_eval', 'torch', 'transformers'),
                 paths=(args.model_dir,))
  import lm_eval  # pylint: disable=g-import-not-at-top
  test_file = os.path.abspath(os.path.join(common.data_dir(), 'gsm8k',
                                           'test.jsonl'))
  t0 = time.time()
  out = lm_eval.simple_evaluate(
      model='hf', model_args={'pretrained': args.model_dir,
                              'dtype': 'float32'},
      tasks=[task_config(test_file)], limit=args.limit,
      batch_size=args.batch_size, device='cpu')
  res = out['results']['gsm8k_cot_local']
  print(json.dumps({'model_dir': args.model_dir, 'questions': args.limit,
                    'seconds': round(time.time() - t0, 1),
                    **{k: v for k, v in res.items()
                       if k.startswith('exact_match')}}, indent=1))


if __name__ == '__main__':
  main()
