"""Export an lmsi model to a Hugging Face directory or a GGUF file.

    python -m lmsi.export --from=MODEL_DIR|CHECKPOINT --to=DIR \\
        --format=hf|gguf [--dtype=float32] [--untie] [--tokenizer=PATH]

`--from` is what the stages read: a training MODEL_DIR (its newest finished
checkpoint, or a step dir `MODEL_DIR/checkpoints/N`), a directory
`lmsi.convert` wrote, or a model artifact (`assets/demo_base`). The config
comes from the run's `train_manifest.json` / `convert_manifest.json` /
`artifact.json`; the tokenizer (and its special ids, chat template) is found
by following `initial_checkpoint` back to the converted model, or given with
`--tokenizer`.

  * hf: `lmsi.interop.hf_export` (config.json, safetensors,
  generation_config.json)
    plus `tokenizer.json` and a `tokenizer_config.json` transformers reads.
  * gguf: `DIR/model.gguf` by `lmsi.interop.gguf_export` (llama.cpp loads it).

`DIR` is written whole or not at all (a temp dir renamed into place, its
`export_manifest.json` last); rerunning with the same model and options is a
no-op, and a `DIR` that holds anything else is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from typing import Any

import jax
import numpy as np

from lmsi.checkpoints import artifact
from lmsi.checkpoints import store as checkpoints
from lmsi.model import decoder as decoder_lib
from lmsi.interop import gguf_export
from lmsi.interop import hf_export
from lmsi.runtime import manifests
from lmsi.interop import pretrained
from lmsi.vocab import pretrained as pretrained_vocab
from lmsi.runtime import fileio

MANIFEST = 'export_manifest.json'
_MANIFESTS = ('train_manifest.json', 'convert_manifest.json')
_TOKENIZER_FILES = ('tokenizer.json', 'tokenizer.model', artifact.VOCAB_FILE)
BYTES = 'bytes'  # --tokenizer for lmsi's ByteVocab (pretrained_vocab's twin)


class ExportError(ValueError):
  """A model lmsi cannot export as asked; the message says why and where."""


@dataclasses.dataclass(frozen=True)
class Source:
  """A model to export, with what was found about where it came from."""

  config: decoder_lib.DecoderConfig
  params: dict[str, Any]  # numpy, as stored
  checkpoint: str  # the params directory (or artifact) read
  tokenizer: str | None  # tokenizer.json / tokenizer.model / vocab.json
  facts: dict[str, Any]  # bos_id, eos_id, pad_id, add_bos, chat_template, pre
  context_length: int | None  # of the original pretrained model, if known


def _manifest(path: str) -> tuple[str, dict] | None:
  """(its dir, contents) of the run manifest at `path` or up to 2 above."""
  for cand in (path, os.path.dirname(path),
               os.path.dirname(os.path.dirname(path))):
    for name in _MANIFESTS:
      if os.path.isfile(os.path.join(cand, name)):
        with open(os.path.join(cand, name), encoding='utf-8') as f:
          return cand, json.load(f)
  return None


def _origin_context_length(origin: str | None) -> int | None:
  """max_position_embeddings / context_length of a converted source."""
  if not origin or not os.path.exists(origin):
    return None
  if os.path.isdir(origin):
    with open(os.path.join(origin, 'config.json'), encoding='utf-8') as f:
      return json.load(f).get('max_position_embeddings')
  import gguf  # pylint: disable=g-import-not-at-top
  fields = gguf.GGUFReader(origin).fields
  arch = fields['general.architecture'].contents()
  field = fields.get(f'{arch}.context_length')
  return int(field.contents()) if field else None


def _lineage(path: str, tokenizer: str | None) -> tuple[str | None, dict,
                                                         int | None]:
  """(tokenizer file, its facts, context length), following the lineage."""
  facts: dict[str, Any] = {}
  context = None
  seen = set()
  while path and os.path.abspath(path) not in seen and len(seen) < 16:
    seen.add(os.path.abspath(path))
    found = _manifest(path)
    home, man = found if found else (path, {})
    if 'tokenizer' in man:  # convert_manifest.json
      facts = {k: man['tokenizer'].get(k) for k in (
          'bos_id', 'eos_id', 'eos_ids', 'pad_id', 'add_bos', 'chat_template',
          'pre')}
      context = _origin_context_length(man.get('source'))
    if tokenizer is None:
      tokenizer = next((os.path.join(home, n) for n in _TOKENIZER_FILES
                        if os.path.isfile(os.path.join(home, n))), None)
    if tokenizer and facts:
      break
    path = man.get('initial_checkpoint')
  return tokenizer, facts, context


def resolve(path: str, tokenizer: str | None = None) -> Source:
  """The model at `path` (see the module docstring), read into numpy.

  Raises:
    ExportError: if `path` has no finished checkpoint or no manifest saying
      which config it has.
  """
  if tokenizer not in (None, BYTES) and not os.path.isfile(tokenizer):
    raise ExportError(f'--tokenizer={tokenizer}: no such file (expected a '
                      f'tokenizer.json or {BYTES!r})')
  if artifact.is_artifact(path):
    art = artifact.load(path)
    return Source(art.model_config, jax.tree.map(np.asarray, art.params),
                  path, tokenizer or art.vocab_path, {}, None)
  found = _manifest(path)
  if found is None:
    raise ExportError(
        f'{path}: no {" or ".join(_MANIFESTS)} here or in its parents; '
        'expected a training MODEL_DIR, a step dir of one, a directory '
        'written by lmsi.convert, or a model artifact')
  _, man = found
  cfg = decoder_lib.DecoderConfig(**(man.get('model_config') or man['config']))
  try:
    ppath = checkpoints.params_path(path)
    params = checkpoints.restore_params(cfg, path)
  except FileNotFoundError as e:
    raise ExportError(f'{path}: no finished checkpoint to export ({e})'
                      ) from None
  tokenizer, facts, context = _lineage(path, tokenizer)
  if tokenizer == BYTES:
    facts = {'eos_id': 1, 'pad_id': 0, 'bos_id': None}
  elif tokenizer and not facts and tokenizer.endswith('.json'):
    facts = _hf_facts(tokenizer)
  return Source(cfg, jax.tree.map(np.asarray, params), ppath, tokenizer,
                facts, context)


def _hf_facts(tokenizer_json: str) -> dict[str, Any]:
  """Special ids of a tokenizer.json (with its tokenizer_config.json)."""
  from lmsi.vocab import (  # pylint: disable=g-import-not-at-top
      simple as vocab_lib)
  vocab = vocab_lib.load(tokenizer_json)
  if not hasattr(vocab, 'tokenizer'):
    return {}
  return {'bos_id': vocab.bos_id, 'eos_id': vocab.eos_id,
          'eos_ids': list(vocab.eos_ids), 'pad_id': vocab.pad_id}


def _tokenizer_json(src: Source) -> tuple[dict | None, str]:
  """(parsed tokenizer.json, where it came from) of `src`, or (None, why)."""
  if src.tokenizer == BYTES:
    return json.loads(pretrained_vocab.byte_tokenizer_json()), BYTES
  if src.tokenizer and src.tokenizer.endswith('tokenizer.json'):
    with open(src.tokenizer, encoding='utf-8') as f:
      return json.load(f), src.tokenizer
  return None, src.tokenizer or 'no tokenizer'


def _hf_tokenizer_files(src: Source, out: str) -> list[str]:
  """Writes the tokenizer for transformers; the names of the files written.

  lmsi's WordVocab (vocab.json) has no transformers equivalent: none.
  """
  spec, _ = _tokenizer_json(src)
  if spec is None:
    if src.tokenizer and src.tokenizer.endswith('.model'):
      # tokenizer.model as it is, and add_bos / the special tokens in a
      # tokenizer_config.json (transformers picks the class by model_type).
      pretrained_vocab.SentencePieceVocab.from_file(src.tokenizer).save(out)
      return ['tokenizer.model', 'tokenizer_config.json']
    return []
  if src.tokenizer == BYTES:
    fileio.write_json(os.path.join(out, 'tokenizer.json'), spec)
  else:  # the file the model came with, byte for byte
    shutil.copyfile(src.tokenizer, os.path.join(out, 'tokenizer.json'))
  pieces = {i: t for t, i in spec['model']['vocab'].items()}
  pieces.update({a['id']: a['content'] for a in spec['added_tokens']})
  config = {'tokenizer_class': 'PreTrainedTokenizerFast',
            'add_bos_token': bool(src.facts.get('add_bos')),
            'add_eos_token': False, 'clean_up_tokenization_spaces': False,
            **{f'{k}_token': pieces[src.facts[f'{k}_id']]
               for k in ('bos', 'eos', 'pad')
               if src.facts.get(f'{k}_id') in pieces}}
  if src.facts.get('chat_template'):
    config['chat_template'] = src.facts['chat_template']
  fileio.write_json(os.path.join(out, 'tokenizer_config.json'), config)
  return ['tokenizer.json', 'tokenizer_config.json']


def _gguf_tokenizer(src: Source, source: str, vocab_size: int
                    ) -> dict[str, Any]:
  """llama.cpp's tokenizer metadata of `src`: byte-level BPE from its
  tokenizer.json, or SentencePiece from its tokenizer.model."""
  if src.tokenizer and src.tokenizer.endswith('.model'):
    with open(src.tokenizer, 'rb') as f:
      return gguf_export.sentencepiece_metadata(f.read(), vocab_size,
                                                src.facts, src.tokenizer)
  spec, where = _tokenizer_json(src)
  if spec is None:
    raise ExportError(
        f'{source}: GGUF needs a byte-level BPE tokenizer.json or a '
        f'SentencePiece tokenizer.model for llama.cpp; this model has '
        f'{where} (pass --tokenizer=PATH/tokenizer.json, or {BYTES!r} for '
        'ByteVocab)')
  return gguf_export.tokenizer_metadata(spec, where, vocab_size, src.facts)


def export(source: str, out_dir: str, fmt: str, *, dtype: str = 'float32',
           untie: bool = False, tokenizer: str | None = None,
           context_length: int | None = None, gguf_pre: str | None = None,
           max_shard_bytes: int = 5 * 2**30) -> dict[str, Any]:
  """Exports `source` into `out_dir` as `fmt` ('hf' or 'gguf').

  Returns the export manifest.

  Raises:
    ExportError: for a source without a finished checkpoint, a model or
      tokenizer the format cannot express, or an `out_dir` holding
      something else.
  """
  if fmt not in ('hf', 'gguf'):
    raise ExportError(f"--format={fmt!r}: expected 'hf' or 'gguf'")
  src = resolve(source, tokenizer)
  if gguf_pre:
    src = dataclasses.replace(src, facts={**src.facts, 'pre': gguf_pre})
  options = {'format': fmt, 'dtype': dtype, 'untie': untie,
             'context_length': context_length, 'tokenizer': src.tokenizer,
             'gguf_pre': gguf_pre}
  digest = checkpoints.params_sha256(src.params)
  done = _existing(out_dir, digest, options)
  if done is not None:
    return done
  cfg, params = src.config, src.params
  if untie:
    cfg, params = pretrained.untied(cfg, params)
  context = context_length or src.context_length or 2048
  tmp = f'{out_dir.rstrip("/")}.tmp-{uuid.uuid4().hex[:12]}'
  os.makedirs(tmp)
  try:
    if fmt == 'hf':
      files = hf_export.write(tmp, cfg, params, dtype=dtype, special=src.facts,
                              context_length=context,
                              max_shard_bytes=max_shard_bytes)
      tok_files = _hf_tokenizer_files(src, tmp)
      files += tok_files
      tok_file = tok_files[0] if tok_files else None
      types = {dtype: len(jax.tree.leaves(params))}
    else:
      meta = _gguf_tokenizer(src, source, cfg.vocab_size)
      types = gguf_export.write(os.path.join(tmp, 'model.gguf'), cfg, params,
                                meta, dtype=dtype, context_length=context)
      files, tok_file = ['model.gguf'], src.tokenizer
  except pretrained.ConversionError as e:
    shutil.rmtree(tmp, ignore_errors=True)
    raise ExportError(str(e)) from None
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  manifest = manifests.stage_manifest(
      [src.checkpoint], source=os.path.abspath(source), options=options,
      params_sha256=digest, config=dataclasses.asdict(cfg),
      untied=cfg != src.config, context_length=context, tensor_types=types,
      tokenizer=tok_file, tokenizer_facts=src.facts,
      files={f: manifests.file_sha256(os.path.join(tmp, f)) for f in files})
  fileio.write_json(os.path.join(tmp, MANIFEST), manifest)
  if os.path.isdir(out_dir):
    os.rmdir(out_dir)  # empty: `_existing` checked
  os.replace(tmp, out_dir)
  return manifest


def _existing(out_dir: str, digest: str, options: dict) -> dict | None:
  """The manifest of an identical finished export in `out_dir`, or None.

  Raises:
    ExportError: if `out_dir` holds a different model, other options, or
      files that are not an lmsi export.
  """
  if not os.path.exists(out_dir) or not os.listdir(out_dir):
    return None
  path = os.path.join(out_dir, MANIFEST)
  if not os.path.isfile(path):
    raise ExportError(f'{out_dir} already holds files that are not an lmsi '
                      f'export ({sorted(os.listdir(out_dir))[:5]}); choose '
                      'another --to or empty it')
  with open(path, encoding='utf-8') as f:
    done = json.load(f)
  if done.get('params_sha256') != digest or done.get('options') != options:
    raise ExportError(
        f'{out_dir} already holds a different export (of {done.get("source")}'
        f', params sha256 {str(done.get("params_sha256"))[:12]}, options '
        f'{done.get("options")}); choose another --to or delete it')
  return done
