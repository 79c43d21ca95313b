"""The metrics registry: conformance of every registered metric, the suite built from it, and
plug-ins through the ``nowcast.metrics`` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pytest

from nowcast import registry
from nowcast.metrics import METRICS, ContingencyTable, Metric, ScoreSuite
from nowcast.metrics.suite import SUITE_METRICS

#: an empty state of each built-in metric (a new built-in adds its example here)
EXAMPLES: dict[str, Any] = {
    "categorical": lambda: METRICS.get("categorical").init([0.5, 2.0], 3),
    "continuous": lambda: METRICS.get("continuous").init(3),
    "fss": lambda: METRICS.get("fss").init([0.5], [1, 3], 3),
    "reliability": lambda: METRICS.get("reliability").init(3, occurrence=1.0, n_bins=5),
}


def _case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = rng.uniform(0, 1, (3, 8, 8))  # also a valid probability for the reliability state
    o = rng.gamma(0.5, 2.0, (3, 8, 8))
    o[:, :2, :2] = np.nan  # no coverage: masked
    return f, o


def test_every_built_in_has_an_example() -> None:
    assert set(EXAMPLES) <= set(METRICS.names())
    assert set(SUITE_METRICS.values()) <= set(METRICS.names())


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_registered_metric_conforms(name: str) -> None:
    """Protocol members; merge of two halves == one state over both; to_dict round trip."""
    a, b, both = EXAMPLES[name](), EXAMPLES[name](), EXAMPLES[name]()
    assert isinstance(a, Metric)
    for seed, part in ((1, a), (2, b)):
        f, o = _case(seed)
        part.accumulate(f, o)
        both.accumulate(f, o)
    a.merge(b)
    assert a == both
    again = type(a).from_dict(a.to_dict())
    assert again == a
    for key, value in a.compute().items():
        np.testing.assert_array_equal(value, both.compute()[key])


def test_suite_states_come_from_the_registry() -> None:
    suite = ScoreSuite.init(n_leads=2, thresholds=[1.0], fss_thresholds=[1.0], fss_scales=[1], lightning=True)
    for state, name in SUITE_METRICS.items():
        assert type(getattr(suite, state)) is METRICS.get(name), state
    assert ScoreSuite.from_dict(suite.to_dict()) == suite
    saved = suite.to_dict()
    saved["errors"]["kind"] = "ContingencyTable"
    with pytest.raises(ValueError, match="saved kind 'ContingencyTable' is not 'ErrorSums'"):
        ScoreSuite.from_dict(saved)


def test_plug_in_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="my_table", value="nowcast.metrics.categorical:ContingencyTable", group="nowcast.metrics")
    groups: list[str] = []

    def fake_entry_points(group: str) -> list[EntryPoint]:
        groups.append(group)
        return [ep] if group == "nowcast.metrics" else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    fresh = registry.Registry("metrics")
    fresh.register("categorical", ContingencyTable)
    assert fresh.get("my_table") is ContingencyTable
    assert groups == ["nowcast.metrics"]
    with pytest.raises(registry.UnknownNameError, match="valid: categorical, my_table"):
        fresh.get("nope")
