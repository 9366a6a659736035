"""What to try when a simulated federation learned nothing.

A model whose accuracy is the majority-class rate has learned only which
label is most common: at a small ε the DP noise drowns the signal, a few
rounds are too few for it to average out, and own data without a declared
schema has features on scales so different that one clipped gradient is
dominated by the largest. The hint names those three levers, and, for a run
under local DP-SGD on features that are on one scale, a fourth: distributed
DP, where the sites add shares of one noise so the model carries the noise
one central DP-SGD step needs instead of every site's full noise. That is a
lever when the noise is the limit and the sites are small: on the wine
data's three sites of about 47 records it lifts ε = 1 from 0.87 to 0.94
(docs/privacy.md#utility-own-data). It is not suggested for signed-log
features: there the scale is the limit, and distributed DP measurably
learns nothing either.
"""

from __future__ import annotations

import numpy as np

from securefl.data.federations import FederatedData

__all__ = ["learned_nothing_hint", "majority_rate"]

#: accuracy this close to the majority-class rate counts as "learned nothing"
TOLERANCE = 0.01


def majority_rate(data: FederatedData) -> float:
    """Accuracy of always predicting the most common label, on what the run is scored on."""
    if data.y_test is not None:
        labels = data.y_test
    else:
        labels = np.concatenate([s.y_val for s in data.sites])
    counts = np.bincount(labels, minlength=len(data.classes))
    return float(counts.max() / counts.sum())


def learned_nothing_hint(
    data: FederatedData,
    accuracy: float,
    *,
    epsilon: float,
    rounds: int,
    privacy: str = "local",
    secure: str = "mask",
) -> str | None:
    """One paragraph of what to try, or ``None`` when the model beats the majority rate.

    ``privacy`` and ``secure`` are the run's: distributed DP is suggested only
    to a local DP-SGD run, with ``--secure mask`` when the run used another
    mode (the Skellam shares are summed by masking), and not for own CSVs
    without a schema, where the schema is the lever.
    """
    base = majority_rate(data)
    if not accuracy <= base + TOLERANCE:  # NaN (nothing trained) gets no hint either
        return None
    tries = [
        f"a larger budget (--epsilon {max(2 * epsilon, 2.0):g}): less noise per step",
        f"more rounds (--rounds {2 * rounds}): the noise averages out over more steps",
    ]
    if privacy == "local" and data.preprocessing != "signed_log":
        needs = "" if secure == "mask" else " --secure mask"
        tries.append(
            f"distributed DP (--privacy distributed{needs}): the sites share one noise, so the "
            "model carries the noise of one central DP-SGD step rather than every site's; it "
            "matters most when sites hold few records"
        )
    if data.preprocessing == "signed_log":
        tries.append(
            "a schema (--schema FILE) declaring each column's range or categories, so that "
            "every feature is on the same scale"
        )
    return (
        f"the federated model's accuracy {accuracy:.3f} is no better than always predicting "
        f"the most common class ({base:.3f}): it learned nothing. Try " + "; ".join(tries) + "."
    )
