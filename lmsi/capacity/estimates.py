"""Roofline estimates of step and round time (capacity, docs/capacity.md).

From the per-device programs `lmsi.capacity.aot` compiles and a chip's stated
peaks: step time = max(FLOPs / peak, bytes / HBM bandwidth) / efficiency. The
efficiency (train MFU, fraction of the decode roofline) is an assumption the
caller states; ICI communication is not modelled. FLOPs of the train step are
analytic (`model_flops`), because XLA counts a loop body once (a scanned layer
stack, gradient accumulation).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from lmsi.model import decoder as decoder_lib

def matmul_params(cfg: decoder_lib.DecoderConfig) -> int:
  """Weights in matmuls per token: layers plus the LM head (no lookup)."""
  c = cfg
  attn = c.embed_dim * (2 * c.num_heads + 2 * c.num_kv_heads) * c.head_dim
  return c.num_layers * (attn + 3 * c.embed_dim * c.mlp_dim) + (
      c.embed_dim * c.vocab_size)


def model_flops(cfg: decoder_lib.DecoderConfig, tokens: int,
                context: int) -> float:
  """Forward FLOPs of `tokens` tokens each attending to `context` keys
  (scores and weighted sum over the full masked matrix, as lmsi computes)."""
  attn = 4 * cfg.num_layers * context * cfg.num_heads * cfg.head_dim
  return float(tokens) * (2 * matmul_params(cfg) + attn)


def kv_cache_bytes(cfg: decoder_lib.DecoderConfig, context: int,
                   windowed: bool = False, dtype_bytes: int | None = None
                   ) -> int:
  """Bytes of one sequence's KV cache at `context` tokens, all layers.

  lmsi's caches (`layers.empty_slot_cache`, the shared prefix) keep every
  position on every layer (`windowed=False`); `windowed=True` counts what a
  cache keeping only the last `sliding_window` positions on local layers
  would hold. `dtype_bytes`: default the activations' dtype's size.
  """
  size = dtype_bytes or jnp.dtype(cfg.dtype).itemsize
  per_token = 2 * cfg.num_kv_heads * cfg.head_dim * size  # k and v
  kept = [min(context, cfg.sliding_window) if windowed and local
          else context for local in cfg.local_layers]
  return per_token * sum(kept)


@dataclasses.dataclass(frozen=True)
class Estimate:
  step_s: float
  tokens_per_s: float  # per slice
  bound: str  # 'compute' or 'memory'


def roofline(flops: float, bytes_read: float, tokens: int, chip: Any,
             efficiency: float) -> Estimate:
  """Step time = max(flops / peak, bytes / bandwidth) / efficiency, per chip
  (ICI communication is not modelled); tokens are the slice's per step."""
  compute, memory = flops / chip.peak_flops, bytes_read / chip.hbm_bandwidth
  step = max(compute, memory) / efficiency
  return Estimate(step, tokens / step,
                  'compute' if compute >= memory else 'memory')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Round:
  """One LMSI round: sample m paths for every question, then fine-tune."""

  questions: int = 7473  # GSM8K train
  mean_generated: int = 128  # tokens per path (assumed; 100-256)
  train_steps: int = 10_000  # TRAIN_STEPS


def sample_seconds(cfg: decoder_lib.DecoderConfig, programs: list[Any],
                   shape: Any, tgt: Any, efficiency: float,
                   rnd: Round) -> dict[str, float]:
  """Roofline times of sampling: a decode step reads the device's params
  and slot caches once (the chunk's argument bytes); the prefill is taken
  as compute-bound on the analytic FLOPs."""
  prefill, chunk = programs
  decode = roofline(chunk.flops, chunk.argument_bytes, shape.num_slots,
                    tgt.chip, efficiency)
  prompt_tokens = shape.questions * shape.prompt_len
  pf = roofline(model_flops(cfg, prompt_tokens,
                            shape.prefix_len + shape.prompt_len)
                / len(tgt.devices), prefill.argument_bytes, prompt_tokens,
                tgt.chip, efficiency)
  slot_steps = rnd.questions * shape.num_samples * rnd.mean_generated / (
      shape.num_slots)
  calls = -(-rnd.questions // shape.questions)
  return dict(decode_step_s=decode.step_s, decode_bound=decode.bound,
              decode_tokens_per_s=decode.tokens_per_s,
              prefill_call_s=pf.step_s,
              round_sample_s=slot_steps * decode.step_s + calls * pf.step_s)


def train_seconds(cfg: decoder_lib.DecoderConfig, shape: Any,
                  tgt: Any, mfu: float, rnd: Round) -> dict[str, float]:
  """A train step at `mfu` of peak on the analytic FLOPs (3x forward) of
  its rows (`shape.rows`: a preference pair is two)."""
  tokens = shape.rows * shape.length
  flops = 3 * model_flops(cfg, tokens, shape.length) / len(tgt.devices)
  est = roofline(flops, 0.0, tokens, tgt.chip, mfu)
  return dict(train_step_s=est.step_s, train_tokens_per_s=est.tokens_per_s,
              round_train_s=rnd.train_steps * est.step_s,
              model_flops_per_chip=flops)
