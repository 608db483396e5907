"""`lmsi.export`: Hugging Face and GGUF files others load, and back.

Round trips import(export(x)) == x bit for bit (f32), transformers and
lm-evaluation-harness on exported tiny models against lmsi's own forward
pass, sharded safetensors, lower-precision exports, and the errors.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from lmsi.checkpoints import artifact
from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.interop import exporting as export
from lmsi.interop import gguf_import
from lmsi.interop import hf_import
from lmsi.runtime import fileio
from lmsi.vocab import simple as vocab_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ['Q: Tom has 3 apples and buys 4 more. How many apples?\nA:',
         'Q: 12 - 5 = ?\nA: The answer is',
         'héllo wörld, 1/2 + 1/3 = 5/6']


def _variant(tiny_cfg, kind):
  """The tiny config with plain tied, untied, or Qwen2-style biased heads."""
  return dataclasses.replace(
      tiny_cfg, scale_tied_logits=False, tie_embeddings=kind == 'tied',
      attention_bias=kind == 'qwen2')


def _converted_dir(path, cfg, seed=0):
  """A directory like lmsi.convert writes: orbax params + manifest."""
  params = jax.tree.map(np.asarray, decoder_lib.init_params(cfg, seed)[0])
  # Non-trivial norms and biases, so a transposed or dropped tensor shows.
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.1 * np.arange(x.size, dtype=np.float32).reshape(
          x.shape) / x.size if 'scale' in str(p) or 'bias' in str(p) else x,
      params)
  checkpoints.save_params(str(path), params)
  fileio.write_json(os.path.join(path, 'convert_manifest.json'),
                     {'config': dataclasses.asdict(cfg)})
  return params


def _same(a, b):
  return all(jax.tree.leaves(jax.tree.map(
      lambda x, y: np.asarray(x).dtype == np.asarray(y).dtype
      and np.array_equal(np.asarray(x), np.asarray(y)), a, b)))


def _logits(cfg, params, vocab, texts):
  ids = [vocab.encode(t) for t in texts]
  n = max(map(len, ids))
  tokens = np.array([i + [0] * (n - len(i)) for i in ids], np.int32)
  valid = np.array([[1] * len(i) + [0] * (n - len(i)) for i in ids], bool)
  return np.asarray(decoder_lib.Decoder(cfg).apply(
      {'params': params}, tokens, valid)), tokens, valid


@pytest.mark.parametrize('kind', ['tied', 'untied', 'qwen2'])
def test_hf_and_gguf_round_trips_are_bitwise(tmp_path, tiny_cfg, kind):
  cfg = _variant(tiny_cfg, kind)
  params = _converted_dir(tmp_path / 'src', cfg)
  export.export(str(tmp_path / 'src'), str(tmp_path / 'hf'), 'hf',
                tokenizer='bytes')
  back = hf_import.import_hf(str(tmp_path / 'hf'))
  assert back.config == cfg and _same(back.params, params)
  with open(tmp_path / 'hf' / 'config.json', encoding='utf-8') as f:
    assert json.load(f)['model_type'] == ('qwen2' if kind == 'qwen2'
                                          else 'llama')
  export.export(str(tmp_path / 'src'), str(tmp_path / 'gguf'), 'gguf',
                tokenizer='bytes')
  gguf_file = str(tmp_path / 'gguf' / 'model.gguf')
  back = gguf_import.import_gguf(gguf_file)
  # GGUF stores eps as float32: the value an f32 forward pass uses anyway.
  assert back.config == dataclasses.replace(
      cfg, norm_eps=float(np.float32(cfg.norm_eps)))
  assert _same(back.params, params)
  # llama.cpp's tokenizer metadata rebuilds ByteVocab id for id.
  theirs, ours = vocab_lib.load(gguf_file), vocab_lib.ByteVocab()
  assert [theirs.encode(t) for t in TEXTS] == [ours.encode(t) for t in TEXTS]
  assert (theirs.eos_id, theirs.pad_id) == (ours.eos_id, ours.pad_id)


@pytest.mark.parametrize('kind', ['tied', 'qwen2'])
def test_llama_cpp_runs_the_gguf_export(tmp_path, tiny_cfg, kind):
  llama_cpp = pytest.importorskip('llama_cpp')
  cfg = _variant(tiny_cfg, kind)
  params = _converted_dir(tmp_path / 'src', cfg)
  export.export(str(tmp_path / 'src'), str(tmp_path / 'g'), 'gguf',
                tokenizer='bytes')
  f32 = llama_cpp.GGML_TYPE_F32  # llama.cpp's KV cache is f16 by default
  llm = llama_cpp.Llama(str(tmp_path / 'g' / 'model.gguf'), n_ctx=256,
                        n_threads=1, logits_all=True, verbose=False,
                        type_k=f32, type_v=f32)
  vocab = vocab_lib.ByteVocab()
  text = TEXTS[0]
  assert llm.tokenize(text.encode(), add_bos=False) == vocab.encode(text)
  llm.eval(vocab.encode(text))
  theirs = np.asarray(llm.scores[:llm.n_tokens])
  ours = _logits(cfg, params, vocab, [text])[0][0]
  assert np.max(np.abs(theirs - ours)) < 1e-4 * np.max(np.abs(ours))


def test_a_model_dir_exports_with_the_tokenizer_it_was_converted_with(
    tmp_path, tiny_cfg):
  """MODEL_DIR -> train_manifest's initial_checkpoint -> the converted dir's
  tokenizer.json and special ids (what a fine-tuned SmolLM2 run has)."""
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      pretrained as pretrained_vocab)
  cfg = _variant(tiny_cfg, 'tied')
  base = tmp_path / 'converted'
  _converted_dir(base, cfg)
  (base / 'tokenizer.json').write_text(pretrained_vocab.byte_tokenizer_json())
  fileio.write_json(str(base / 'convert_manifest.json'), {
      'config': dataclasses.asdict(cfg), 'source': None,
      'tokenizer': {'eos_id': 1, 'pad_id': 0, 'bos_id': None,
                    'chat_template': '{{ messages }}', 'add_bos': False}})
  tuned = jax.tree.map(lambda x: x + 1.0,
                       jax.tree.map(np.asarray,
                                    decoder_lib.init_params(cfg, 3)[0]))
  model_dir = tmp_path / 'model'
  checkpoints.save(checkpoints.manager(str(model_dir)), 7, tuned, {'step': 7})
  fileio.write_json(str(model_dir / 'train_manifest.json'), {
      'model_config': dataclasses.asdict(cfg),
      'initial_checkpoint': str(base)})
  m = export.export(str(model_dir / 'checkpoints' / '7'),
                    str(tmp_path / 'hf'), 'hf')
  assert m['tokenizer'] == 'tokenizer.json'
  assert m['inputs'][0]['path'].endswith(os.path.join('7', 'params'))
  assert _same(hf_import.import_hf(str(tmp_path / 'hf')).params, tuned)
  with open(tmp_path / 'hf' / 'tokenizer_config.json', encoding='utf-8') as f:
    tok = json.load(f)
  assert (tok['eos_token'], tok['pad_token']) == ('</s>', '<pad>')
  assert tok['chat_template'] == '{{ messages }}'
  assert (tmp_path / 'hf' / 'tokenizer.json').read_bytes() == (
      base / 'tokenizer.json').read_bytes()


def test_sharded_safetensors_with_an_index(tmp_path, tiny_cfg):
  cfg = _variant(tiny_cfg, 'untied')
  params = _converted_dir(tmp_path / 'src', cfg)
  manifest = export.export(str(tmp_path / 'src'), str(tmp_path / 'hf'), 'hf',
                           max_shard_bytes=20_000)
  shards = [f for f in manifest['files'] if f.startswith('model-')]
  assert len(shards) > 2 and 'model.safetensors.index.json' in manifest['files']
  assert not os.path.exists(tmp_path / 'hf' / 'model.safetensors')
  assert _same(hf_import.import_hf(str(tmp_path / 'hf')).params, params)


def test_lower_precision_exports(tmp_path, tiny_cfg):
  cfg = _variant(tiny_cfg, 'tied')
  params = _converted_dir(tmp_path / 'src', cfg)
  src = str(tmp_path / 'src')
  export.export(src, str(tmp_path / 'bf16'), 'hf', dtype='bfloat16')
  back = hf_import.import_hf(str(tmp_path / 'bf16'))
  cast = jax.tree.map(lambda x: np.asarray(
      jax.numpy.asarray(x, jax.numpy.bfloat16), np.float32), params)
  assert _same(back.params, cast) and not _same(back.params, params)
  m = export.export(src, str(tmp_path / 'q8'), 'gguf', dtype='q8_0',
                    tokenizer='bytes')
  assert m['tensor_types']['Q8_0'] > 0 and m['tensor_types']['F32'] > 0
  back = gguf_import.import_gguf(str(tmp_path / 'q8' / 'model.gguf'))
  for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(params)):
    assert np.max(np.abs(a - b)) <= 0.01 * np.max(np.abs(b)) + 1e-7


def test_transformers_loads_the_export_with_no_custom_code(tmp_path, tiny_cfg):
  torch = pytest.importorskip('torch')
  transformers = pytest.importorskip('transformers')
  for kind in ('untied', 'qwen2'):
    cfg = _variant(tiny_cfg, kind)
    params = _converted_dir(tmp_path / kind, cfg)
    out = str(tmp_path / f'{kind}_hf')
    export.export(str(tmp_path / kind), out, 'hf', tokenizer='bytes')
    model = transformers.AutoModelForCausalLM.from_pretrained(
        out, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    vocab = vocab_lib.ByteVocab()
    assert [tok(t)['input_ids'] for t in TEXTS] == [vocab.encode(t)
                                                    for t in TEXTS]
    ours, tokens, valid = _logits(cfg, params, vocab, TEXTS)
    with torch.no_grad():
      theirs = model(input_ids=torch.tensor(tokens, dtype=torch.long),
                     attention_mask=torch.tensor(valid, dtype=torch.long)
                     ).logits.numpy()
    assert np.max(np.abs(ours - theirs)[valid]) < 1e-4, kind


def test_untie_keeps_the_scaled_tied_logits(tmp_path, tiny_cfg):
  assert tiny_cfg.tie_embeddings and tiny_cfg.scale_tied_logits
  params = _converted_dir(tmp_path / 'src', tiny_cfg)
  with pytest.raises(export.ExportError, match='--untie'):
    export.export(str(tmp_path / 'src'), str(tmp_path / 'hf'), 'hf')
  assert not os.path.exists(tmp_path / 'hf')
  m = export.export(str(tmp_path / 'src'), str(tmp_path / 'hf'), 'hf',
                    untie=True)
  assert m['untied'] and m['tokenizer'] is None
  back = hf_import.import_hf(str(tmp_path / 'hf'))
  vocab = vocab_lib.ByteVocab()
  want = _logits(tiny_cfg, params, vocab, TEXTS)[0]
  got = _logits(back.config, back.params, vocab, TEXTS)[0]
  assert np.max(np.abs(want - got)) < 1e-5


def test_errors_name_what_is_wrong(tmp_path, tiny_cfg):
  cfg = _variant(tiny_cfg, 'tied')
  # A model dir whose training never finished a checkpoint.
  os.makedirs(tmp_path / 'model')
  fileio.write_json(str(tmp_path / 'model' / 'train_manifest.json'),
                     {'model_config': dataclasses.asdict(cfg)})
  with pytest.raises(export.ExportError, match='no finished checkpoint'):
    export.export(str(tmp_path / 'model'), str(tmp_path / 'out'), 'hf')
  with pytest.raises(export.ExportError, match='train_manifest.json'):
    export.export(str(tmp_path), str(tmp_path / 'out'), 'hf')
  # An output dir that holds another model, other options, or other files.
  _converted_dir(tmp_path / 'a', cfg, seed=0)
  _converted_dir(tmp_path / 'b', cfg, seed=1)
  first = export.export(str(tmp_path / 'a'), str(tmp_path / 'out'), 'hf')
  again = export.export(str(tmp_path / 'a'), str(tmp_path / 'out'), 'hf')
  assert again == first  # a finished export is not redone
  with pytest.raises(export.ExportError, match='different export'):
    export.export(str(tmp_path / 'b'), str(tmp_path / 'out'), 'hf')
  with pytest.raises(export.ExportError, match='different export'):
    export.export(str(tmp_path / 'a'), str(tmp_path / 'out'), 'hf',
                  dtype='bfloat16')
  os.makedirs(tmp_path / 'busy')
  (tmp_path / 'busy' / 'notes.txt').write_text('mine')
  with pytest.raises(export.ExportError, match='not an lmsi export'):
    export.export(str(tmp_path / 'a'), str(tmp_path / 'busy'), 'hf')
  # GGUF cannot carry lmsi's WordVocab (the demo base's tokenizer).
  base = os.path.join(REPO, 'assets', 'demo_base')
  assert artifact.is_artifact(base)
  with pytest.raises(export.ExportError, match='tokenizer.json'):
    export.export(base, str(tmp_path / 'g'), 'gguf', untie=True)
  assert not [n for n in os.listdir(tmp_path) if '.tmp-' in n]


def _lmsi_loglikelihood(cfg, params, vocab, context, continuation):
  """Sum of log p(continuation | context) under lmsi's forward pass."""
  ctx, cont = vocab.encode(context), vocab.encode(continuation)
  tokens = np.array([ctx + cont], np.int32)
  logits = decoder_lib.Decoder(cfg).apply(
      {'params': params}, tokens, np.ones_like(tokens, bool))
  logp = np.asarray(jax.nn.log_softmax(logits[0], axis=-1))
  rows = np.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
  return float(logp[rows, cont].sum()), bool(
      (logp[rows].argmax(-1) == np.array(cont)).all())


@pytest.fixture(scope='module')
def fine_tuned(tmp_path_factory, tiny_cfg):
  """The tiny model trained by lmsi's train step on byte-encoded arithmetic
  CoT, saved as a MODEL_DIR (orbax step dir + train_manifest.json)."""
  from tests.conftest import (  # pylint: disable=g-import-not-at-top
      write_arith_data)
  from lmsi.data import inputs  # pylint: disable=g-import-not-at-top
  from lmsi.trainer import (  # pylint: disable=g-import-not-at-top
      step as train_step)
  root = tmp_path_factory.mktemp('fine_tuned')
  write_arith_data(root / 'data', {'seed': 64, 'test': 8})
  with open(root / 'data' / 'seed.jsonl', encoding='utf-8') as f:
    rows = [json.loads(line) for line in f]
  vocab = vocab_lib.ByteVocab()
  cfg = dataclasses.replace(tiny_cfg, vocab_size=vocab.vocab_size)
  params = decoder_lib.init_params(cfg, 0)[0]
  tx = train_step.make_optimizer('adamw', 3e-3)
  opt_state, step = tx.init(params), train_step.make_train_step(cfg, tx)
  losses = []
  for i in range(40):
    batch = rows[(8 * i) % 64: (8 * i) % 64 + 8]
    b = inputs.decoder_only_batch(
        [np.array(vocab.encode(f"Q: {r['question']}\nA:")) for r in batch],
        [np.array(vocab.encode(f" {r['cot']}")) for r in batch], 256)
    params, opt_state, loss = step(params, opt_state, b)
    losses.append(float(loss))
  assert losses[-1] < 0.6 * losses[0]  # it learned something
  model_dir = root / 'model'
  checkpoints.save(checkpoints.manager(str(model_dir)), 40, params,
                   {'step': 40})
  fileio.write_json(str(model_dir / 'train_manifest.json'),
                     {'model_config': dataclasses.asdict(cfg)})
  return root, cfg, jax.tree.map(np.asarray, params)


@pytest.mark.slow  # lm_eval imports datasets, torch, transformers: ~25 s
def test_lm_eval_loglikelihoods_equal_lmsi_on_a_trained_model(
    tmp_path, fine_tuned):
  """lm-evaluation-harness's HF backend on a model lmsi trained."""
  pytest.importorskip('lm_eval')
  root, cfg, params = fine_tuned
  out = str(tmp_path / 'hf')
  # The real CLI, on the real MODEL_DIR the trainer wrote.
  subprocess.run([sys.executable, '-m', 'lmsi.export',
                  f'--from={root / "model"}', f'--to={out}', '--format=hf',
                  '--untie', '--tokenizer=bytes'], check=True, cwd=REPO,
                 capture_output=True)
  from lm_eval.api.instance import (  # pylint: disable=g-import-not-at-top
      Instance)
  from lm_eval.models.huggingface import (  # pylint: disable=g-import-not-at-top
      HFLM)
  lm = HFLM(pretrained=out, device='cpu', batch_size=4, dtype='float32')
  with open(root / 'data' / 'test.jsonl', encoding='utf-8') as f:
    rows = [json.loads(line) for line in f][:6]
  requests = [(f"Q: {r['question']}\nA:", f" {r['cot']}") for r in rows]
  theirs = lm.loglikelihood([
      Instance('loglikelihood', {}, req, i) for i, req in enumerate(requests)],
                            disable_tqdm=True)
  vocab = vocab_lib.ByteVocab()
  ours = [_lmsi_loglikelihood(cfg, params, vocab, *req)
          for req in requests]
  diff = max(abs(a[0] - b[0]) for a, b in zip(theirs, ours))
  print(f'lm-eval vs lmsi max |loglikelihood diff| = {diff:.3g}')
  assert diff < 1e-3
  assert [a[1] for a in theirs] == [b[1] for b in ours]
