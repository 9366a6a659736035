"""Record-wise feature transforms that need no pooled statistics.

Why record-wise: no hospital may see the pooled data, and DP-SGD only
protects what it trains on. A scaler fitted on a site's (or everyone's) data
is itself a statistic of the patients that DP-SGD does not account for. Two
transforms are offered, both fixed functions of one record:

- ``public_ranges``: min-max scaling on a log scale with ranges published in
  a data set's documentation (public domain knowledge, not computed by any
  site). The default for the bundled data set. Privacy cost: none.
- ``signed_log``: ``sign(x)·log1p(|x|)``, for a site's own CSV where no
  public ranges are declared. Privacy cost: none; it only tames scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["public_range_scale", "signed_log"]


def public_range_scale(
    x: npt.NDArray[np.float64], lows: Sequence[float], highs: Sequence[float]
) -> npt.NDArray[np.float32]:
    """Map each feature into [-1, 1] on a log1p scale using published ranges."""
    lo = np.log1p(np.asarray(lows, dtype=np.float64))
    hi = np.log1p(np.asarray(highs, dtype=np.float64))
    z = (np.log1p(np.maximum(x, 0.0)) - lo) / np.maximum(hi - lo, 1e-12)
    scaled: npt.NDArray[np.float32] = np.clip(2.0 * z - 1.0, -1.5, 1.5).astype(np.float32)
    return scaled


def signed_log(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """``sign(x)·log1p(|x|)``: compresses large values without any statistics."""
    return (np.sign(x) * np.log1p(np.abs(x))).astype(np.float32)
