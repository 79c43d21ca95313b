"""Streaming verification scores with explicit state: init / accumulate / merge / compute.

States pool exactly across cases, splits and workers; scores are computed from pooled
states, never averaged per case. NaN (no coverage / no forecast) is masked, never "dry".
"""

from nowcast.metrics.base import METRICS, Metric, safe_ratio
from nowcast.metrics.categorical import CATEGORICAL_SCORES, ContingencyTable, scores_from_counts
from nowcast.metrics.continuous import CONTINUOUS_SCORES, ErrorSums
from nowcast.metrics.fss import FractionsSkillScore
from nowcast.metrics.probabilistic import BrierReliability
from nowcast.metrics.suite import ScoreSuite

__all__ = [
    "CATEGORICAL_SCORES",
    "CONTINUOUS_SCORES",
    "METRICS",
    "BrierReliability",
    "ContingencyTable",
    "ErrorSums",
    "FractionsSkillScore",
    "Metric",
    "ScoreSuite",
    "safe_ratio",
    "scores_from_counts",
]
