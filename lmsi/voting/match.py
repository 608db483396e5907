"""Answer match modes: the paper's rule and lm-evaluation-harness's GSM8K rules.

A mode decides both which answer a generation gives (the vote key) and
whether that answer counts as correct against a gold answer:

  paper             `lmsi.data.answers`: the first number after the first
                    case-insensitive "the answer is", compared numerically.
  lm_eval_strict    lm-eval's `gsm8k_cot` "strict-match" filter and metric.
  lm_eval_flexible  lm-eval's `gsm8k_cot` "flexible-extract" filter and
                    metric: the last number-like run anywhere in the text.

The lm-eval modes are a re-implementation, not an import, of
EleutherAI/lm-evaluation-harness v0.4.13 and follow, exactly:

  lm_eval/tasks/gsm8k/gsm8k-cot.yaml: `filter_list` "strict-match" (regex
    `The answer is (\\-?[0-9\\.\\,]+).`, case-sensitive, the final "." any
    character; group_select 0; then take_first) and "flexible-extract" (regex
    `(-?[$0-9.,]{2,})|(-?[0-9]+)`, group_select -1; then take_first);
    `doc_to_target` (the gold after the last "####", stripped); `metric_list`
    exact_match with ignore_case, no ignore_punctuation and regexes_to_ignore
    `,`, `\\$`, `(?s).*#### `, `\\.$`.
  lm_eval/filters/extraction.py `RegexFilter.apply`: `re.findall`, the
    group_select-th match, a tuple match's first non-empty group, `strip()`,
    "[invalid]" when nothing matches.
  lm_eval/api/metrics.py `exact_match_hf_evaluate`: every ignore regex
    `re.sub`-ed away, in order, from prediction and reference, then both
    lower-cased, then string equality.

So under lm-eval "3.50" is not "3.5" and "18" at the very end of a text gives
"1" under strict-match (the regex's final "." needs one more character);
tests/answer_match_test.py checks every mode against lm-eval's own output on
tests/testdata/answer_match_golden.jsonl (docs/answers.md).
"""

from collections.abc import Sequence
import re

from lmsi.data import answers

PAPER = 'paper'
LM_EVAL_STRICT = 'lm_eval_strict'
LM_EVAL_FLEXIBLE = 'lm_eval_flexible'
MODES = (PAPER, LM_EVAL_STRICT, LM_EVAL_FLEXIBLE)
LM_EVAL_FALLBACK = '[invalid]'  # RegexFilter's default `fallback`

# mode -> (compiled regex, group_select), from gsm8k-cot.yaml's filter_list.
_LM_EVAL_FILTERS = {
    LM_EVAL_STRICT: (re.compile(r'The answer is (\-?[0-9\.\,]+).'), 0),
    LM_EVAL_FLEXIBLE: (re.compile(r'(-?[$0-9.,]{2,})|(-?[0-9]+)'), -1),
}
# gsm8k-cot.yaml's metric_list regexes_to_ignore, applied in this order.
_LM_EVAL_IGNORED = tuple(
    re.compile(p) for p in (',', r'\$', r'(?s).*#### ', r'\.$'))


def validate_modes(
    modes: str | Sequence[str],
    family: answers.Family | str | None = None,
) -> tuple[str, ...]:
  """Checks answer match modes; a single mode name may be given as a string.

  Args:
    modes: Mode names, e.g. ('paper', 'lm_eval_strict'); the first drives
      the vote and the main accuracy.
    family: If given, the answer family they will be used with: the lm-eval
      modes are GSM8K number rules, so other families accept only 'paper'.

  Returns:
    The modes as a tuple.

  Raises:
    ValueError: naming the bad mode (or family) and what was expected.
  """
  modes = (modes,) if isinstance(modes, str) else tuple(modes)
  if not modes:
    raise ValueError(f'answer_match is empty; expected one or more of {MODES}')
  for mode in modes:
    if mode not in MODES:
      raise ValueError(
          f'answer_match mode {mode!r} is unknown; expected one of {MODES}')
  if len(set(modes)) != len(modes):
    raise ValueError(f'answer_match {modes} names a mode twice')
  if family is not None:
    family = answers.Family(family)
    lm_eval = [m for m in modes if m != PAPER]
    if family is not answers.Family.NUMBER and lm_eval:
      raise ValueError(
          f'answer_match mode {lm_eval[0]!r} reproduces lm-eval\'s GSM8K '
          f'number filters; the {family.value!r} answer family supports only '
          f'{PAPER!r}')
  return modes


def lm_eval_filter(text: str, mode: str) -> str:
  """lm-eval's filtered response: its regex filter, then take_first.

  Args:
    text: One generation.
    mode: 'lm_eval_strict' or 'lm_eval_flexible'.

  Returns:
    The matched text, stripped, e.g. "18." or "$1,200"; `LM_EVAL_FALLBACK`
    ("[invalid]") if the regex finds nothing.
  """
  if mode not in _LM_EVAL_FILTERS:
    raise ValueError(f'{mode!r} is not an lm-eval mode; expected one of '
                     f'{tuple(_LM_EVAL_FILTERS)}')
  regex, group_select = _LM_EVAL_FILTERS[mode]
  found = regex.findall(text)
  if not found:
    return LM_EVAL_FALLBACK
  match = found[group_select]
  if isinstance(match, tuple):  # several groups: the first non-empty one
    match = next((group for group in match if group), LM_EVAL_FALLBACK)
  return match.strip()


def lm_eval_normalize(s: str) -> str:
  """What lm-eval's exact_match compares: ignore regexes removed, lower case."""
  for regex in _LM_EVAL_IGNORED:
    s = regex.sub('', s)
  return s.lower()


def lm_eval_target(gold: str) -> str:
  """gsm8k_cot's `doc_to_target`: the text after the last "####", stripped."""
  return gold.split('####')[-1].strip()


def lm_eval_exact_match(prediction: str, gold: str) -> bool:
  """lm-eval's gsm8k_cot score of one filtered prediction against `gold`."""
  return (lm_eval_normalize(prediction)
          == lm_eval_normalize(lm_eval_target(gold)))


def extract(
    text: str,
    mode: str,
    family: answers.Family | str = answers.Family.NUMBER,
    *,
    options: Sequence[str] | None = None,
) -> str | None:
  """The answer `text` gives under `mode`: the vote key, None if none.

  Args:
    text: One generation.
    mode: One of `MODES`.
    family: The answer family (lm-eval modes: "number" only).
    options: Letter-family option texts, as `answers.extract_answer`.

  Returns:
    'paper': `answers.extract_answer`'s canonical answer. lm-eval modes: the
    filtered response as lm-eval's exact_match compares it (`,`, `$`, a
    trailing "." removed; "3.50" stays "3.50"), None for "[invalid]" or an
    empty string. Two keys are the same answer iff they are equal.
  """
  if mode == PAPER:
    return answers.extract_answer(text, family, options=options)
  validate_modes((mode,), family)
  filtered = lm_eval_filter(text, mode)
  if filtered == LM_EVAL_FALLBACK:
    return None
  return lm_eval_normalize(filtered) or None


def is_correct(
    answer: str | None,
    gold: str | None,
    mode: str,
    family: answers.Family | str = answers.Family.NUMBER,
) -> bool:
  """Whether an `extract` answer scores as correct against `gold`.

  Args:
    answer: From `extract(..., mode, family)`; None is never correct.
    gold: The gold answer ("18"; for lm-eval modes also a whole GSM8K
      solution ending in "#### 18").
    mode: One of `MODES`.
    family: The answer family.

  Returns:
    'paper': `answers.answers_equal`; lm-eval modes: lm-eval's exact_match.
  """
  if mode == PAPER:
    return answers.answers_equal(answer, gold, family)
  validate_modes((mode,), family)
  if answer is None or gold is None:
    return False
  return answer == lm_eval_normalize(lm_eval_target(gold))


def accuracy(
    texts: Sequence[str],
    golds: Sequence[str | None],
    mode: str,
    family: answers.Family | str = answers.Family.NUMBER,
    options: Sequence[Sequence[str] | None] | None = None,
) -> float:
  """Fraction of `texts` whose `mode` answer is correct; 0.0 if none."""
  if len(texts) != len(golds):
    raise ValueError(f'{len(texts)} generations but {len(golds)} gold answers')
  options = options if options is not None else [None] * len(texts)
  hits = sum(is_correct(extract(t, mode, family, options=o), g, mode, family)
             for t, g, o in zip(texts, golds, options))
  return hits / max(len(texts), 1)
