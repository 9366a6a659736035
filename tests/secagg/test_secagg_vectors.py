"""Known-answer and must-fail vectors (tests/vectors/secagg.json, made without securefl)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from secagg_driver import site_names

from securefl.errors import AbortError, ConfigError, IntegrityError, WireError
from securefl.hazmat.sign import verify
from securefl.secagg import MaskConfig, colluders_tolerated, dropouts_tolerated
from securefl.secagg import _messages as m
from securefl.secagg._unmask import check_feasible

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "secagg.json").read_text())


@pytest.mark.parametrize("row", VECTORS["thresholds"], ids=lambda r: f"n={r['n']}")
def test_threshold_vectors(row: dict[str, int]) -> None:
    n = row["n"]
    plan = MaskConfig(clip=1.0).plan(federation="f", round_id=1, cohort=site_names(n))
    assert plan.complete and plan.threshold == row["t"]
    assert colluders_tolerated(n, plan.threshold) == row["colluders"]
    assert dropouts_tolerated(n, plan.threshold) == plan.missing_allowed == row["dropouts"]
    lower = MaskConfig(clip=1.0, corrupt=0).plan(federation="f", round_id=1, cohort=site_names(n))
    assert lower.threshold == row["t_corrupt_0"]
    assert lower.colluders_tolerated == row["colluders_corrupt_0"]


@pytest.mark.parametrize(
    "row",
    VECTORS["cohort_thresholds"],
    ids=lambda r: f"N={r['N']}-n={r.get('n', 'all')}",
)
def test_cohort_threshold_vectors(row: dict[str, Any]) -> None:
    """t comes from the cohort the server opened and c from the whole federation's N."""
    cfg = MaskConfig(clip=1.0)
    if "tolerance" in row:
        assert cfg.federation_tolerance(row["N"]) == row["tolerance"]
        return
    cohort = site_names(row["n"])
    if row["t"] is None:
        with pytest.raises(ConfigError, match="refused"):
            cfg.plan(federation="f", round_id=1, cohort=cohort, federation_size=row["N"])
        return
    plan = cfg.plan(federation="f", round_id=1, cohort=cohort, federation_size=row["N"])
    assert plan.threshold == row["t"]


def _advert(fields: dict[str, Any]) -> bytes:
    return m.advert_message(
        fields["federation"],
        fields["round"],
        fields["site"],
        *(bytes.fromhex(fields[k]) for k in ("c_pk", "s_pk", "commit", "digest")),
    )


@pytest.mark.parametrize("case", VECTORS["adverts"]["cases"], ids=lambda c: c["fields"]["site"])
def test_advert_vectors(case: dict[str, Any]) -> None:
    public = bytes.fromhex(VECTORS["adverts"]["public_key"])
    message = _advert(case["fields"])
    assert message.hex() == case["message"]
    verify(public, message, bytes.fromhex(case["signature"]))
    for bad in case["must_fail"]:
        other = _advert(bad["fields"])
        assert other.hex() == bad["message"], bad["what"]
        with pytest.raises(IntegrityError):
            verify(public, other, bytes.fromhex(case["signature"]))


@pytest.mark.parametrize(
    "row", VECTORS["feasibility"], ids=lambda r: f"{r['what']}-clip{r['clip']}-m{r['summands']}"
)
def test_feasibility_vectors(row: dict[str, Any]) -> None:
    cfg = MaskConfig(clip=row["clip"], precision_bits=row["precision_bits"])
    quant = cfg.quantization(row["summands"])
    assert quant.scale == row["scale"]
    summed = np.asarray(row["sum"], dtype=np.float64) / quant.scale
    if row["feasible"]:
        check_feasible(summed, quant, summands=row["summands"])
    else:
        with pytest.raises(AbortError):
            check_feasible(summed, quant, summands=row["summands"])


MEMBERS = json.loads((Path(__file__).parents[1] / "vectors" / "secagg_members.json").read_text())


@pytest.mark.parametrize("case", MEMBERS["bitmaps"], ids=lambda c: f"n={len(c['cohort'])}")
def test_member_bitmap_vectors(case: dict[str, Any]) -> None:
    """The neighbourhood round's survivor list: one bit per cohort site, LSB first."""
    cohort = tuple(case["cohort"])
    assert m.pack_members(cohort, case["members"]).hex() == case["bitmap"]
    assert m.unpack_members(cohort, bytes.fromhex(case["bitmap"])) == case["members"]


@pytest.mark.parametrize("case", MEMBERS["must_fail"], ids=lambda c: c["why"])
def test_member_bitmap_must_fail_vectors(case: dict[str, Any]) -> None:
    with pytest.raises(WireError):
        m.unpack_members(tuple(case["cohort"]), bytes.fromhex(case["bitmap"]))
