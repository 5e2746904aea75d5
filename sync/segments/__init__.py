"""Segments: the rule language, its SQL compiler, set-based evaluation, explain, lead scoring, A/B splits."""

from sync.segments.compiler import Catalog, RuleCompiler, load_catalog
from sync.segments.config import (
    BUILTIN_FIELDS,
    Comparison,
    Rule,
    SegmentConfig,
    SegmentsConfig,
    TimeTest,
    depends_on_time,
    evaluation_order,
    rule_version,
)
from sync.segments.evaluate import EvaluationReport, SegmentResult, evaluate_segments
from sync.segments.field_checks import check_fields
from sync.segments.scoring import ConditionPoints, EventPoints, ScoringConfig
from sync.segments.split import variant

__all__ = [
    "BUILTIN_FIELDS",
    "Catalog",
    "Comparison",
    "ConditionPoints",
    "EvaluationReport",
    "EventPoints",
    "Rule",
    "RuleCompiler",
    "ScoringConfig",
    "SegmentConfig",
    "SegmentResult",
    "SegmentsConfig",
    "TimeTest",
    "check_fields",
    "depends_on_time",
    "evaluate_segments",
    "evaluation_order",
    "load_catalog",
    "rule_version",
    "variant",
]
