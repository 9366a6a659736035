"""The monitored metric is the median of the reports: a lying minority stays in the honest range."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from securefl.runtime import messages as m
from securefl.runtime._rounds import median_metrics

_finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)


@given(
    honest=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12),
    lies=st.data(),
)
def test_fewer_than_half_liars_cannot_move_the_value_outside_the_honest_range(
    honest: list[float], lies: st.DataObject
) -> None:
    # strictly fewer liars than honest sites, so fewer than half of the survivors
    liars = lies.draw(st.lists(_finite, max_size=len(honest) - 1))
    reports = {f"h{i}": m.Report(metrics={"val_accuracy": v}) for i, v in enumerate(honest)}
    reports |= {f"x{i}": m.Report(metrics={"val_accuracy": v}) for i, v in enumerate(liars)}
    value = median_metrics(reports, tuple(reports))["val_accuracy"]
    assert min(honest) <= value <= max(honest)


def test_only_survivors_and_metrics_all_of_them_reported_count() -> None:
    reports = {
        "a": m.Report(metrics={"val_accuracy": 0.9, "loss": 0.1}),
        "b": m.Report(metrics={"val_accuracy": 0.7}),
        "c": m.Report(metrics={"val_accuracy": 0.8}),
        "gone": m.Report(metrics={"val_accuracy": 1e300}),
    }
    assert median_metrics(reports, ("a", "b", "c")) == {"val_accuracy": 0.8}
    assert median_metrics(reports, ()) == {}
