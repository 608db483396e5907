"""How a token is drawn, and which drafted tokens a step may keep (stage 3).

`choose` draws one token per row: top-k, then top-p, then the Gumbel-max
trick, with the key of (question, sample, position) (`lmsi.sampling.kernels`).

Drafted tokens (prompt lookup): after drawing its token, a slot looks up
the latest earlier occurrence of its last 3 (else 2, else 1) tokens in its
own history (the whole prompt, then the path) and feeds the D tokens that
followed it along with the new one (`lookup`). One step then runs D + 1
tokens per slot, and the token at each drafted position is drawn as it
would have been without drafts, from that position's logits and key: a
draft is kept only if it is that token. Drafting changes how many tokens a
step makes (1.77 a step on average on the GSM8K workload with D = 3, more
in the repetitive tail of a long path), never which.

A step of N slots then computes N (D + 1) rows, and on a CPU that costs
nearly as much as N (D + 1) slots (the attention over the shared exemplar
block grows with the rows too). So D shrinks as slots fill, keeping
N (D + 1) <= a row budget (`draft_count`): with 32 rows, the drain's few
slots draft and full slots do not (`docs/sampling.md`). An accelerator,
whose steps cost the same up to far more rows, can afford a larger budget.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def choose(logits, keys, temperature, top_k, top_p):
  """Picks one token per row. logits [N, V] float32; keys [N, 2].

  Top-k keeps the k best logits (`lax.top_k`, sorted), top-p then keeps the
  smallest head of those whose probability reaches p, and the Gumbel-max
  trick samples among the survivors: Gumbel noise is drawn for the k
  candidates only, not the whole vocabulary.
  """
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1)
  logits = logits / temperature
  vocab = logits.shape[-1]
  k = top_k if 0 < top_k < vocab else (vocab if top_p < 1.0 else 0)
  if k:
    cand, index = jax.lax.top_k(logits, k)  # [N, k], best first
  else:
    cand, index = logits, None
  if top_p < 1.0:
    probs = jax.nn.softmax(cand, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better
    cand = jnp.where(before < top_p, cand, -jnp.inf)
  gumbel = jax.vmap(
      lambda key: jax.random.gumbel(key, (cand.shape[-1],), jnp.float32))(keys)
  choice = jnp.argmax(cand + gumbel, axis=-1)
  if index is None:
    return choice
  return jnp.take_along_axis(index, choice[:, None], axis=-1)[:, 0]


def logprob(logits: jax.Array, token: jax.Array) -> jax.Array:
  """log softmax(logits)[token] per row (float32 [N, V], int [N]), as
  `jax.nn.log_softmax` computes it, without the [N, V] output."""
  shifted = logits - jnp.max(logits, axis=-1, keepdims=True)
  total = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))
  return jnp.take_along_axis(shifted, token[:, None], -1)[:, 0] - total


def draft_count(most: int, rows: int, slots: int) -> int:
  """Tokens to draft a step for `slots` slots: the most <= `most` with
  slots (D + 1) <= `rows`."""
  return min(most, max(rows // slots - 1, 0))


def lookup(hist: jax.Array, cur: jax.Array, draft: int,
           ngram: int = 3) -> jax.Array:
  """Prompt lookup: for each row of `hist` (int [N, H]), the `draft` tokens
  that followed the latest earlier occurrence of the n tokens ending at
  `cur` (int [N]), for the longest n <= `ngram` that occurs; zeros if none
  (and past the end of what the row holds).
  """
  idx = jnp.arange(hist.shape[1])
  best = jnp.full(cur.shape, -1)
  match = idx < cur[:, None]  # [N, H]: j ends a match of the last n tokens
  for n in range(1, ngram + 1):
    last = jnp.take_along_axis(hist, jnp.maximum(cur - n + 1, 0)[:, None], 1)
    match &= (jnp.roll(hist, n - 1, axis=1) == last) & (idx >= n - 1)
    match &= (cur >= n - 1)[:, None]
    found = jnp.max(jnp.where(match, idx, -1), axis=1)
    best = jnp.where(found >= 0, found, best)  # a longer match wins
  take = jnp.minimum(best[:, None] + 1 + jnp.arange(draft), hist.shape[1] - 1)
  return jnp.where(best[:, None] >= 0, jnp.take_along_axis(hist, take, 1), 0)
