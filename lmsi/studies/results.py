"""What a study measured: the schema of metrics.json, as dataclasses.

A study (`python -m lmsi.pipeline`, `python -m lmsi.study`) evaluates arms
(the base, LMSI rounds, the control, the no-vote ablation, named ablations,
distilled students); each evaluation is an `ArmResult`, and a study's
results on one eval task are a `StudyResult`. metrics.json is
`StudyResult.to_json()`; the report (`lmsi.studies.report`) and the README
block read `StudyResult`s, never raw keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArmResult:
  """One arm evaluated on one task split (stage 7's eval.json, kept keys).

  accuracy: {'direct', 'greedy_cot', 'maj@k'}: fraction correct.
  calibration: vote-share bins [{vote_share_lo, vote_share_hi, n,
    accuracy}] of the maj@m vote.
  temperature: the maj@k sampling temperature.
  sweep, sweep_best: maj@k per temperature ({str(T): {'maj@k': acc}}) and
    the best of them (None when no k is common): both or neither.
  answer_match, accuracy_by_match: how answers were matched, and accuracy
    under every matching mode (`python -m lmsi.study`'s arms).
  styles: reasoning styles among greedy outputs, samples and kept paths
    (the demo's arms).
  round: the LMSI round (0: the base) of the demo's `rounds` entries.
  skipped: why the arm was not trained (its vote kept no path).
  """

  accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
  num_questions: int | None = None
  calibration: list[dict[str, Any]] | None = None
  temperature: float | None = None
  sweep: dict[str, dict[str, float]] | None = None
  sweep_best: dict[str, Any] | None = None
  answer_match: str | None = None
  accuracy_by_match: dict[str, dict[str, float]] | None = None
  styles: dict[str, Any] | None = None
  round: int | None = None
  skipped: str | None = None

  def to_json(self) -> dict[str, Any]:
    """The set fields (`sweep_best` wherever `sweep` is, even None)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if getattr(self, f.name) is not None}
    if self.sweep is not None:
      out['sweep_best'] = self.sweep_best
    return out

  @classmethod
  def from_json(cls, obj: Mapping[str, Any]) -> ArmResult:
    """An ArmResult of a metrics.json entry (or an eval.json: its other
    keys, such as the per-mode details, are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in obj.items() if k in names})

  def with_round(self, index: int) -> ArmResult:
    return dataclasses.replace(self, round=index)


def _arm(obj: Mapping[str, Any] | None) -> ArmResult | None:
  return None if obj is None else ArmResult.from_json(obj)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudentResult:
  """A distilled student (paper section 5.3): before and after."""

  before: ArmResult | None = None
  after: ArmResult | None = None

  def to_json(self) -> dict[str, Any]:
    return {k: v.to_json() for k, v in (('before', self.before),
                                         ('after', self.after))
            if v is not None}

  @classmethod
  def from_json(cls, obj: Mapping[str, Any]) -> StudentResult:
    return cls(before=_arm(obj.get('before')), after=_arm(obj.get('after')))


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudyResult:
  """Every arm of a study on one eval task: metrics.json.

  rounds: the base (rounds[0]), then LMSI round 1, 2, ...
  control, no_vote: the comparison arms (None: not run).
  arms: named ablations, in the order they ran.
  students: distilled students, by name.
  """

  rounds: tuple[ArmResult, ...] = ()
  control: ArmResult | None = None
  no_vote: ArmResult | None = None
  arms: dict[str, ArmResult] = dataclasses.field(default_factory=dict)
  students: dict[str, StudentResult] = dataclasses.field(
      default_factory=dict)

  def to_json(self) -> dict[str, Any]:
    out: dict[str, Any] = {'rounds': [r.to_json() for r in self.rounds]}
    for key in ('control', 'no_vote'):
      if getattr(self, key) is not None:
        out[key] = getattr(self, key).to_json()
    if self.arms:
      out['arms'] = {k: v.to_json() for k, v in self.arms.items()}
    if self.students:
      out['students'] = {k: v.to_json() for k, v in self.students.items()}
    return out

  @classmethod
  def from_json(cls, obj: Mapping[str, Any]) -> StudyResult:
    return cls(
        rounds=tuple(ArmResult.from_json(r) for r in obj.get('rounds') or ()),
        control=_arm(obj.get('control')), no_vote=_arm(obj.get('no_vote')),
        arms={k: ArmResult.from_json(v)
              for k, v in (obj.get('arms') or {}).items()},
        students={k: StudentResult.from_json(v)
                  for k, v in (obj.get('students') or {}).items()})
