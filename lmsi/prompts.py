"""Prompt and target formats: the paper's four mixed formats (LMSI stage 2).

Pure strings, no JAX. A prompt ends with "A:" (or the zero-shot CoT trigger);
a target starts with a space and holds either the reasoning path or
"The answer is X.". Few-shot prompts put exemplars "Q: ...\\nA: ...\\n\\n"
before the question; the direct exemplars are the CoT ones with the reasoning
removed (paper §3.2, Table 2).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

from lmsi import answers as answers_lib

ZERO_SHOT_COT_TRIGGER = "Let's think step by step."


class Format(enum.StrEnum):
  COT_FEWSHOT = 'cot_fewshot'
  DIRECT_FEWSHOT = 'direct_fewshot'
  COT_ZEROSHOT = 'cot_zeroshot'
  DIRECT_ZEROSHOT = 'direct_zeroshot'


COT_FORMATS = (Format.COT_FEWSHOT, Format.COT_ZEROSHOT)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Exemplar:
  question: str
  reasoning: str  # ends with "The answer is X."
  answer: str


def direct_target(answer: str) -> str:
  return f' {answers_lib.ANSWER_PREFIX} {answer}.'


def target(fmt: Format, reasoning: str, answer: str) -> str:
  """The training target of a path in format `fmt`."""
  if fmt in COT_FORMATS:
    return ' ' + reasoning.strip()
  return direct_target(answer)


def render(fmt: Format | str, question: str,
           exemplars: Sequence[Exemplar] = ()) -> str:
  """The prompt for `question` in format `fmt`.

  Args:
    fmt: one of `Format`.
    question: the question text (no "Q:").
    exemplars: few-shot exemplars; ignored by zero-shot formats.

  Returns:
    The prompt, ending where the model's target begins.
  """
  fmt = Format(fmt)
  prefix = ''
  if fmt in (Format.COT_FEWSHOT, Format.DIRECT_FEWSHOT):
    if not exemplars:
      raise ValueError(f'format {fmt} needs exemplars')
    for ex in exemplars:
      answer = target(fmt, ex.reasoning, ex.answer)
      prefix += f'Q: {ex.question}\nA:{answer}\n\n'
  prompt = f'{prefix}Q: {question}\nA:'
  if fmt == Format.COT_ZEROSHOT:
    prompt += ' ' + ZERO_SHOT_COT_TRIGGER
  return prompt


# Hand-written exemplars for the embedded arithmetic task: easy problems in
# the seed split's style (one or two steps), never drawn from any split.
ARITHMETIC_EXEMPLARS = (
    Exemplar(question='Kim has 4 mugs. She buys 3. How many mugs now?',
             reasoning='4 + 3 = 7. The answer is 7.', answer='7'),
    Exemplar(question='Lou has 9 cans. He sells 5. He gets 2. '
                      'How many cans now?',
             reasoning='9 - 5 = 4. 4 + 2 = 6. The answer is 6.', answer='6'),
)

EXEMPLARS = {'arithmetic': ARITHMETIC_EXEMPLARS}


def exemplars_for(name: str, num: int | None = None) -> tuple[Exemplar, ...]:
  """The exemplar set `name`, optionally only its first `num`."""
  if name not in EXEMPLARS:
    raise KeyError(f'unknown exemplar set {name!r}; known: {sorted(EXEMPLARS)}')
  return EXEMPLARS[name][:num]
