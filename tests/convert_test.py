"""Checkpoint import: tiny HF (Llama, Qwen2, sharded) and GGUF (every tensor
type) checkpoints written by transformers / gguf, checked against
transformers' own forward pass; plus the errors a bad checkpoint gets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lmsi.interop import importing as convert
from lmsi.interop import weights
from lmsi.interop import gguf_import
from lmsi.interop import hf_import
from lmsi.interop import pretrained
from lmsi.vocab import pretrained as pretrained_vocab
from lmsi.vocab import simple as vocab_lib
from tests.conftest import REPO
from tests.conftest import lmsi_logits
from tests.conftest import transformers_logits

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
gguf = pytest.importorskip('gguf')

TINY = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=96, rms_norm_eps=1e-5, rope_theta=5000.0)


def _hf_model(kind: str, tie: bool):
  torch.manual_seed(0)
  if kind == 'qwen2':
    cfg = transformers.Qwen2Config(**TINY, tie_word_embeddings=tie)
    model = transformers.Qwen2ForCausalLM(cfg)
    with torch.no_grad():  # biases start at zero; make them matter
      for layer in model.model.layers:
        for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj,
                     layer.self_attn.v_proj):
          proj.bias.normal_()
  else:
    cfg = transformers.LlamaConfig(**TINY, tie_word_embeddings=tie)
    model = transformers.LlamaForCausalLM(cfg)
  return model.eval()


def _compare(imported, model, atol=2e-5):
  rng = np.random.default_rng(0)
  tokens = rng.integers(3, 256, size=(3, 12)).astype(np.int32)
  valid = np.ones_like(tokens, bool)
  valid[1, 9:] = False
  valid[2, 5:] = False
  got = lmsi_logits(imported.config, imported.params, tokens, valid)
  want = transformers_logits(model, tokens, valid)
  np.testing.assert_allclose(got[valid], want[valid], atol=atol)


@pytest.mark.parametrize('kind,tie,shard', [('llama', True, False),
                                            ('llama', False, True),
                                            ('qwen2', False, False)])
def test_hf_directory_matches_transformers(tmp_path, kind, tie, shard):
  model = _hf_model(kind, tie)
  model.save_pretrained(tmp_path, max_shard_size='40KB' if shard else '1GB')
  assert os.path.exists(tmp_path / 'model.safetensors.index.json') == shard
  imported = hf_import.import_hf(str(tmp_path))
  assert imported.config.attention_bias == (kind == 'qwen2')
  assert imported.config.tie_embeddings == tie
  _compare(imported, model)


def test_hf_bfloat16_safetensors(tmp_path):
  model = _hf_model('llama', True).to(torch.bfloat16)
  model.save_pretrained(tmp_path)
  imported = hf_import.import_hf(str(tmp_path))
  assert imported.tensor_types == {'BF16': 2 * 9 + 2}
  want = model.model.embed_tokens.weight.detach().float().numpy()
  np.testing.assert_array_equal(imported.params['embedding'], want)


def _permute(w, heads):
  """llama.cpp's q/k row interleaving (the inverse of the importer's)."""
  return (w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def write_gguf(path, model, qtype, *, arch='llama', drop=None, vocab=256):
  """A GGUF of `model` with every 2-D weight stored as `qtype`."""
  cfg = model.config
  writer = gguf.GGUFWriter(str(path), arch)
  writer.add_block_count(cfg.num_hidden_layers)
  writer.add_context_length(256)
  writer.add_embedding_length(cfg.hidden_size)
  writer.add_feed_forward_length(cfg.intermediate_size)
  writer.add_head_count(cfg.num_attention_heads)
  writer.add_head_count_kv(cfg.num_key_value_heads)
  writer.add_rope_freq_base(cfg.rope_parameters['rope_theta'])
  writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
  writer.add_vocab_size(vocab)
  writer.add_tokenizer_model('gpt2')
  writer.add_token_list([f'<t{i}>' for i in range(vocab)])
  sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
  names = {'model.embed_tokens.weight': 'token_embd.weight',
           'model.norm.weight': 'output_norm.weight',
           'lm_head.weight': 'output.weight'}
  per_layer = {'self_attn.q_proj': 'attn_q', 'self_attn.k_proj': 'attn_k',
               'self_attn.v_proj': 'attn_v', 'self_attn.o_proj': 'attn_output',
               'mlp.gate_proj': 'ffn_gate', 'mlp.up_proj': 'ffn_up',
               'mlp.down_proj': 'ffn_down', 'input_layernorm': 'attn_norm',
               'post_attention_layernorm': 'ffn_norm'}
  for name, w in sd.items():
    if name == 'lm_head.weight' and cfg.tie_word_embeddings:
      continue
    if name in names:
      out = names[name]
    else:
      parts = name.split('.')  # model.layers.i.<module...>.weight
      out = f'blk.{parts[2]}.{per_layer[".".join(parts[3:-1])]}.{parts[-1]}'
    if out == drop:
      continue
    if arch == 'llama' and '.attn_q.' in out:
      w = _permute(w, cfg.num_attention_heads)
    elif arch == 'llama' and '.attn_k.' in out:
      w = _permute(w, cfg.num_key_value_heads)
    t = qtype if w.ndim == 2 else gguf.GGMLQuantizationType.F32
    data = gguf.quants.quantize(w.astype(np.float32), t)
    writer.add_tensor(out, data, raw_dtype=t)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


@pytest.mark.parametrize('qtype', ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0',
                                   'Q4_1'])
def test_gguf_every_tensor_type_matches_transformers(tmp_path, qtype):
  """transformers dequantizes the same file independently; logits agree."""
  t = getattr(gguf.GGMLQuantizationType, qtype)
  path = tmp_path / f'tiny-{qtype}.gguf'
  write_gguf(path, _hf_model('llama', tie=qtype in ('Q8_0', 'Q4_1')), t)
  imported = gguf_import.import_gguf(str(path))
  matrices = 1 + 2 * 7 + (0 if imported.config.tie_embeddings else 1)
  norms = 2 * 2 + 1
  assert imported.tensor_types[qtype] == matrices + (
      norms if qtype == 'F32' else 0)
  theirs = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path), gguf_file=path.name, dtype=torch.float32).eval()
  _compare(imported, theirs, atol=1e-4)


def test_gguf_errors_name_the_tensor(tmp_path):
  model = _hf_model('llama', True)
  missing = tmp_path / 'missing.gguf'
  write_gguf(missing, model, gguf.GGMLQuantizationType.F32,
             drop='blk.1.ffn_up.weight')
  with pytest.raises(
      pretrained.ConversionError,
      match=r"missing.gguf: missing tensor 'blk.1.ffn_up.weight'"):
    gguf_import.import_gguf(str(missing))
  other = tmp_path / 'gpt2.gguf'
  writer = gguf.GGUFWriter(str(other), 'gpt2')
  writer.add_block_count(1)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  with pytest.raises(pretrained.ConversionError,
                     match=r"gpt2.gguf: architecture 'gpt2' is not supported"):
    gguf_import.import_gguf(str(other))


def test_hf_errors(tmp_path):
  model = _hf_model('llama', True)
  model.save_pretrained(tmp_path)
  cfg_path = tmp_path / 'config.json'
  config = json.loads(cfg_path.read_text())
  config['intermediate_size'] = 100  # shapes no longer fit the config
  cfg_path.write_text(json.dumps(config))
  with pytest.raises(pretrained.ConversionError,
                     match=r"tensor '0.gate' has shape \(96, 64\), the config "
                           r'implies \(100, 64\)'):
    hf_import.import_hf(str(tmp_path))
  config['model_type'] = 'gpt_neox'
  cfg_path.write_text(json.dumps(config))
  with pytest.raises(pretrained.ConversionError,
                     match="model_type 'gpt_neox' is not supported"):
    hf_import.import_hf(str(tmp_path))
  with pytest.raises(pretrained.ConversionError, match='no config.json'):
    hf_import.import_hf(str(tmp_path / 'nowhere'))


def test_bad_safetensors_name_the_file_and_tensor(tmp_path):
  safetensors_numpy = pytest.importorskip('safetensors.numpy')
  model = _hf_model('llama', True)
  model.save_pretrained(tmp_path)
  weights = tmp_path / 'model.safetensors'
  tensors = safetensors_numpy.load_file(str(weights))
  norm = tensors['model.norm.weight']
  tensors['model.norm.weight'] = norm.astype(np.uint8)
  safetensors_numpy.save_file(tensors, str(weights))
  with pytest.raises(pretrained.ConversionError,
                     match=r"model.safetensors: tensor 'model.norm.weight' "
                           r"has dtype U8; expected one of \['BF16'"):
    hf_import.import_hf(str(tmp_path))
  tensors['model.norm.weight'] = norm
  del tensors['model.layers.1.mlp.up_proj.weight']
  safetensors_numpy.save_file(tensors, str(weights))
  with pytest.raises(pretrained.ConversionError,
                     match=r"missing tensor 'model.layers.1.mlp.up_proj."
                           r"weight' \(1.up\)"):
    hf_import.import_hf(str(tmp_path))
  weights.write_bytes(b'\x10' + b'\x00' * 7 + b'{"a": not json!}')
  with pytest.raises(pretrained.ConversionError,
                     match=r'model.safetensors: not a safetensors file'):
    hf_import.import_hf(str(tmp_path))


def _tiny_tokenizer(directory, size=256):
  """A WordLevel tokenizer.json of `size` tokens (EOS '<eos>' = 0)."""
  tokenizers = pytest.importorskip('tokenizers')
  words = ['<eos>', ' '] + [f'w{i}' for i in range(size - 2)]
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(
      {w: i for i, w in enumerate(words)}, unk_token='<eos>'))
  pretrained_vocab.HFVocab(tok, eos_id=0).save(str(directory))


def test_convert_binary_writes_checkpoint_and_manifest(tmp_path):
  """`python -m lmsi.convert` (absl flags) on a tiny HF directory."""
  model = _hf_model('llama', True)
  model.save_pretrained(tmp_path / 'hf')
  _tiny_tokenizer(tmp_path / 'hf')
  out = tmp_path / 'out'
  run = subprocess.run(
      [sys.executable, '-m', 'lmsi.convert', f'--from={tmp_path / "hf"}',
       f'--to={out}'], cwd=REPO, capture_output=True, text=True, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  manifest = json.loads((out / 'convert_manifest.json').read_text())
  assert json.loads(run.stdout)['num_params'] == manifest['num_params'] == sum(
      p.numel() for p in model.parameters())
  assert manifest['tensor_types'] == {'F32': 2 * 9 + 2}
  assert manifest['tokenizer']['saved_as'] == 'tokenizer.json'
  assert manifest['tokenizer']['vocab_size'] == 256
  assert (out / 'checkpoints' / '0' / 'params').is_dir()
  assert 'MODEL_CONFIG = @decoder.DecoderConfig()' in (
      out / 'model.gin').read_text()
  usage = subprocess.run(
      [sys.executable, '-m', 'lmsi.convert', f'--to={out}', 'extra'],
      cwd=REPO, capture_output=True, text=True, check=False)
  assert usage.returncode != 0
  assert 'Flag --from must have a value other than None' in usage.stderr


def test_convert_refuses_a_tokenizer_larger_than_the_model(tmp_path):
  """A 49152-token tokenizer.json beside a 256-token model is an error."""
  model = _hf_model('llama', True)
  model.save_pretrained(tmp_path / 'hf')
  vocab_lib.load(weights.smollm2_gguf()).save(str(tmp_path / 'hf'))
  with pytest.raises(ValueError, match='tokenizer has 49152 tokens but the '
                                       'model config has vocab_size=256'):
    convert.convert(str(tmp_path / 'hf'), str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out' / 'convert_manifest.json')


def test_sentencepiece_vocab(tmp_path):
  spm = pytest.importorskip('sentencepiece')
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text('\n'.join(
      f'Q: Tom has {i} apples and buys {i + 3}. The answer is {2 * i + 3}.'
      for i in range(300)))
  spm.SentencePieceTrainer.train(
      input=str(corpus), model_prefix=str(tmp_path / 'sp'), vocab_size=320,
      byte_fallback=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
  v = vocab_lib.load(str(tmp_path / 'sp.model'))
  text = 'Q: Tom has 7 apples. The answer is 17.'
  ids = v.encode(text)
  assert v.decode(ids + [v.eos_id] + ids) == text
  assert b''.join(v.token_bytes()[i] for i in ids).decode() == ' ' + text
  seqio_vocab = v.to_seqio()
  assert list(seqio_vocab.encode(text)) == ids
