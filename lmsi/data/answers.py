"""Final-answer extraction from sampled reasoning paths (LMSI stage 4 input).

Each sampled chain-of-thought ends with "The answer is ...". This module finds
the first such prefix, parses the text after it into a canonical answer string
for one of three answer families, and compares canonical answers. Paths whose
answer cannot be parsed yield None and never vote.

Only the rest of the line after the prefix is parsed (leading whitespace,
a single newline and a colon are skipped first; a blank line ends it), so a
few-shot continuation such as "\\n\\nQ: There are 15 trees ..." cannot leak
a number into the answer. A fraction parses as its value ("1/2" -> "0.5"),
never as its numerator; one without a finite decimal ("1/3"), a zero
denominator, a mixed number ("2 1/2") or a date ("3/4/2020") is unparseable.
"""

from collections.abc import Sequence
import decimal
import enum
import fractions
import re

ANSWER_PREFIX = 'The answer is'


class Family(enum.StrEnum):
  """Answer families: arithmetic, multiple choice, NLI labels, yes/no."""
  NUMBER = 'number'
  LETTER = 'letter'
  NLI = 'nli'
  YESNO = 'yesno'  # StrategyQA-style questions


_PREFIX_RE = re.compile(r'\bthe answer is(?![\w\'’])', re.IGNORECASE)
_MINUS = '-−'  # ASCII hyphen-minus and U+2212.
_NUMBER_RE = re.compile(
    rf'(?<![\w.])(?P<sign>[{_MINUS}])?\s?\$?\s?'
    r'(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+)?|\.\d+)')
# After the first number, "/ 2" makes it a fraction's numerator, another
# "/ 7" after that a date, and " 1/2" makes it a mixed number's whole part.
_FRACTION_RE = re.compile(r'\s*/\s*(?P<den>\d+(?:\.\d+)?)(?!\.?\d)')
_SLASH_RE = re.compile(r'\s*/\s*\d')
_MIXED_RE = re.compile(r'\s+\d+(?:\.\d+)?\s*/\s*\d')
_PLAIN_NUMBER_RE = re.compile(r'[-+]?(?:\d+(?:\.\d*)?|\.\d+)')
_LETTERS = 'ABCDE'
_LETTER_RE = re.compile(
    r'(?:(?:option|choice)\s+)?'
    r'(?:\((?P<paren>[a-e])\)|(?P<closed>[a-e])\)|(?P<bare>[a-e])(?![\w]))',
    re.IGNORECASE)
_ARTICLE_RE = re.compile(r'^\W*(?:a|an|the)\s+', re.IGNORECASE)
_NLI_LABELS = {
    'yes': 'entailment',
    'no': 'contradiction',
    'it is not possible to tell': 'neutral',
    'it s not possible to tell': 'neutral',
    'not possible to tell': 'neutral',
    'entailment': 'entailment',
    'contradiction': 'contradiction',
    'neutral': 'neutral',
}
# ANLI's release labels: valid gold, never parsed out of a generation.
_NLI_GOLD = {**_NLI_LABELS, 'e': 'entailment', 'n': 'neutral',
             'c': 'contradiction'}
_YESNO_GOLD = {'yes': 'yes', 'no': 'no', 'true': 'yes', 'false': 'no'}
_NLI_TEXTS = {'entailment': 'yes', 'contradiction': 'no',
              'neutral': 'it is not possible to tell'}


def normalize_number(s: str) -> str | None:
  """Canonicalises a number string, e.g. a GSM8K gold answer.

  Strips whitespace, `$` and thousands commas and accepts a leading sign.
  Integers lose leading zeros and trailing `.0`; decimals lose trailing zeros.

  Args:
    s: A number such as "1,234", "$18", "-3", "12.00" or "3.50".

  Returns:
    The canonical string ("1234", "18", "-3", "12", "3.5"; "-0" -> "0"), or
    None if `s` is not a plain number (units, exponents, words, empty).
  """
  cleaned = re.sub(r'[\s$,]', '', s)
  for minus in _MINUS:
    cleaned = cleaned.replace(minus, '-')
  if not _PLAIN_NUMBER_RE.fullmatch(cleaned):
    return None
  value = decimal.Decimal(cleaned)
  if value == value.to_integral_value():
    return str(int(value))
  return format(value.normalize(), 'f')


def _words(s: str) -> str:
  """Lower-cases `s` and replaces punctuation runs with single spaces."""
  return ' '.join(re.sub(r'[^\w]+', ' ', s.lower()).split())


def _starts_with_words(text: str, prefix: str) -> bool:
  return bool(prefix) and (text == prefix or text.startswith(prefix + ' '))


def _divide(numerator: str, denominator: str) -> str | None:
  """numerator / denominator written as `normalize_number` writes numbers.

  Returns None if the denominator is 0 or the quotient has no finite decimal
  expansion (1/3): such a fraction is unparseable, never its numerator.
  """
  den = fractions.Fraction(denominator)
  if not den:
    return None
  value = fractions.Fraction(numerator) / den
  rest = value.denominator
  for prime in (2, 5):
    while rest % prime == 0:
      rest //= prime
  if rest != 1:
    return None
  places = 0
  while (value * 10**places).denominator != 1:
    places += 1
  digits = decimal.Decimal((value * 10**places).numerator).scaleb(-places)
  return normalize_number(format(digits, 'f'))


def _parse_number(rest: str) -> str | None:
  """The first number of `rest`; "1/2" as 0.5, "2 1/2" and "3/0" as None."""
  match = _NUMBER_RE.search(rest)
  if match is None:
    return None
  number = normalize_number((match['sign'] or '') + match['digits'])
  tail = rest[match.end():]
  if _MIXED_RE.match(tail):
    return None  # a mixed number: "2 1/2" is neither 2 nor 2.5 by rule
  if (fraction := _FRACTION_RE.match(tail)) is not None:
    if _SLASH_RE.match(tail[fraction.end():]):
      return None  # a date such as "3/4/2020"
    return _divide(number, fraction['den'])
  if _SLASH_RE.match(tail):
    return None  # "1/2.5.3": no single number
  return number


def _parse_letter(rest: str, options: Sequence[str] | None) -> str | None:
  """Parses "(B)", "B)", "b", "B.", "option C" or, failing that, option text."""
  match = _LETTER_RE.match(rest.lstrip(' :'))
  # A lower-case bare "a" followed by a word is the article, not option A.
  if match and not (match['bare'] == 'a' and re.match(
      r'\s+\w', rest.lstrip(' :')[match.end():])):
    return (match['paren'] or match['closed'] or match['bare']).upper()
  if not options:
    return None
  text = _words(rest)
  candidates = [text, _words(_ARTICLE_RE.sub('', rest, count=1))]
  best, best_len = None, 0
  for i, option in enumerate(options[:len(_LETTERS)]):
    option_words = _words(option)
    if len(option_words) > best_len and any(
        _starts_with_words(c, option_words) for c in candidates):
      best, best_len = _LETTERS[i], len(option_words)
  return best


def _parse_yesno(rest: str) -> str | None:
  text = _words(rest)
  for word in ('yes', 'no'):
    if _starts_with_words(text, word):
      return word
  return None


def _parse_nli(rest: str) -> str | None:
  text = _words(rest)
  for phrase in sorted(_NLI_LABELS, key=len, reverse=True):
    if _starts_with_words(text, phrase):
      return _NLI_LABELS[phrase]
  return None


def extract_answer(
    text: str,
    family: Family | str = Family.NUMBER,
    *,
    options: Sequence[str] | None = None,
) -> str | None:
  """Extracts the canonical final answer from one generated reasoning path.

  Args:
    text: The generated text, e.g. "... 16 - 3 - 4 = 9. The answer is 18."
    family: "number" (canonical number string, see `normalize_number`),
      "letter" (upper-case option letter A-E), "nli" ("entailment",
      "contradiction" or "neutral"; "yes"/"no"/"it is not possible to tell"
      are mapped to these) or "yesno" ("yes" or "no").
    options: For the letter family, options[i] is the text of option
      chr(65 + i). Used only when no letter parses: the option whose text
      starts the answer (ignoring case, punctuation and a leading article;
      longest match wins) gives the letter.

  Returns:
    The canonical answer, or None if the case-insensitive prefix "the answer
    is" is absent or the rest of its line does not parse. Only the first
    occurrence of the prefix is used.
  """
  family = Family(family)
  match = _PREFIX_RE.search(text)
  if match is None:
    return None
  rest = text[match.end():]
  skipped = rest[:len(rest) - len(rest.lstrip())]
  if '\n\n' in skipped:  # a blank line ends the path: nothing follows
    return None
  rest = rest.lstrip().removeprefix(':').lstrip().split('\n', 1)[0]
  if family is Family.NUMBER:
    return _parse_number(rest)
  if family is Family.LETTER:
    return _parse_letter(rest, options)
  if family is Family.YESNO:
    return _parse_yesno(rest)
  return _parse_nli(rest)


def answer_text(answer: str, family: Family | str = Family.NUMBER) -> str:
  """How a canonical answer is written after "The answer is" in a prompt.

  The inverse of `extract_answer` on the paper's answer formats: numbers as
  they are, option letters as "(b)", NLI labels as "yes" / "no" / "it is not
  possible to tell" (paper App. A).

  Args:
    answer: A canonical answer ("18", "B", "entailment").
    family: Its answer family.

  Returns:
    The answer text, e.g. "(b)"; `extract_answer(f'The answer is {text}.')`
    gives `answer` back.

  Raises:
    ValueError: if `answer` is not a valid answer of `family`.
  """
  family = Family(family)
  canonical = canonical_answer(answer, family)
  if canonical is None:
    raise ValueError(f'{answer!r} is not a valid {family.value} answer')
  if family is Family.LETTER:
    return f'({canonical.lower()})'
  if family is Family.NLI:
    return _NLI_TEXTS[canonical]
  return canonical


def canonical_answer(answer: str | None,
                     family: Family | str = Family.NUMBER) -> str | None:
  """Canonicalises an already-extracted (or gold) answer; None if invalid.

  Numbers as `normalize_number`; letters "b", "(B)", "B." -> "B"; NLI labels
  "yes" / "e" / "Entailment" -> "entailment" (ANLI's e/n/c included).
  """
  family = Family(family)
  if answer is None:
    return None
  if family is Family.NUMBER:
    return normalize_number(answer)
  if family is Family.LETTER:
    match = re.fullmatch(r'\(?([a-e])\)?\.?', answer.strip(), re.IGNORECASE)
    return match[1].upper() if match else None
  if family is Family.YESNO:
    return _YESNO_GOLD.get(_words(answer))
  return _NLI_GOLD.get(_words(answer))


def answers_equal(
    a: str | None, b: str | None, family: Family | str = Family.NUMBER
) -> bool:
  """Whether two answers agree; None (or an invalid answer) equals nothing.

  Numbers compare numerically after `normalize_number` ("12.0" == "12",
  "1,000" == "1000"); letters ignore case and parentheses; NLI answers map
  "yes"/"no"/"it is not possible to tell" onto their labels first.

  Args:
    a: First answer, e.g. an extracted prediction.
    b: Second answer, e.g. a gold label.
    family: The answer family of both answers.

  Returns:
    True iff both answers are valid for `family` and canonically equal.
  """
  family = Family(family)
  ca, cb = canonical_answer(a, family), canonical_answer(b, family)
  if ca is None or cb is None:
    return False
  if family is Family.NUMBER:
    return decimal.Decimal(ca) == decimal.Decimal(cb)
  return ca == cb
