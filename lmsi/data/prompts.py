"""Prompt and target formats: the paper's four mixed formats (LMSI stage 2).

Pure strings, no JAX. A prompt ends with "A:" (or the zero-shot CoT trigger);
a target starts with a space and holds either the reasoning path or
"The answer is X.". Few-shot prompts put exemplars "Q: ...\\nA: ...\\n\\n"
before the question; the direct exemplars are the CoT ones with the reasoning
removed (paper §3.2, Table 2).

Question texts of the benchmarks (paper App. A) are built here too, so tasks
and exemplars agree: multiple choice is "stem (a) ... (b) ..." and an answer
"The answer is (b)."; NLI is the "Premise: ... OPTIONS: - yes - no - it is
not possible to tell" template, answered "The answer is yes.".
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence

from lmsi.data import answers as answers_lib

ZERO_SHOT_COT_TRIGGER = "Let's think step by step."
OPTION_LETTERS = 'abcde'
NLI_OPTIONS = ('yes', 'no', 'it is not possible to tell')


class Format(enum.StrEnum):
  COT_FEWSHOT = 'cot_fewshot'
  DIRECT_FEWSHOT = 'direct_fewshot'
  COT_ZEROSHOT = 'cot_zeroshot'
  DIRECT_ZEROSHOT = 'direct_zeroshot'


COT_FORMATS = (Format.COT_FEWSHOT, Format.COT_ZEROSHOT)
FORMAT_NAMES = tuple(f.value for f in Format)  # all four (paper §3.2)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Exemplar:
  question: str
  reasoning: str  # ends with "The answer is X."
  answer: str  # X as written there: "18", "(b)", "yes" (answers.answer_text)


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


def choice_question(stem: str, options: Sequence[str]) -> str:
  """A multiple-choice question: "stem (a) first (b) second ...".

  Args:
    stem: the question text.
    options: 2 to 5 option texts, in letter order.

  Returns:
    The question text; `options_of` recovers `options` (stripped) from it.

  Raises:
    ValueError: for fewer than 2 or more than 5 options.
  """
  if not 2 <= len(options) <= len(OPTION_LETTERS):
    raise ValueError(f'expected 2-{len(OPTION_LETTERS)} options, got '
                     f'{len(options)}: {list(options)!r}')
  return stem.strip() + ''.join(
      f' ({letter}) {option.strip()}'
      for letter, option in zip(OPTION_LETTERS, options))


def options_of(question: str) -> tuple[str, ...]:
  """The options of a `choice_question` text; () if it has none.

  The options are the last run of markers " (a) ", " (b) ", ... in order, so
  a stem that itself contains "(c)" (ARC has one) does not confuse it.
  """
  starts = [m.start() for m in re.finditer(r' \(a\) ', question)]
  for start in reversed(starts):
    cuts, pos = [start], start
    for letter in OPTION_LETTERS[1:]:
      nxt = question.find(f' ({letter}) ', pos + 1)
      if nxt < 0:
        break
      cuts.append(nxt)
      pos = nxt
    if len(cuts) >= 2:
      ends = cuts[1:] + [len(question)]
      return tuple(question[c + 5:e].strip() for c, e in zip(cuts, ends))
  return ()


def nli_question(premise: str, hypothesis: str) -> str:
  """The paper's NLI question (App. A, ANLI), answered yes / no / not sure."""
  options = ''.join(f'\n- {o}' for o in NLI_OPTIONS)
  return (f'Premise:\n"{premise.strip()}"\nBased on this premise, can we '
          f'conclude the hypothesis "{hypothesis.strip()}" is true?\n'
          f'OPTIONS:{options}')
