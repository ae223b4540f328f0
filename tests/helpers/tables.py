"""Tables as people export them, made in code: text categories with gaps, yes/no,
numbers with gaps, ISO dates, an id and a constant column, a target with gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ["north", "south", "east", "west"]


def messy_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A churn-like table whose class depends on a category, a number and a date.

    ``churned`` (yes/no) follows region, age and the month of sign-up; ``spend`` is a
    positive, skewed amount that follows the same, for regression."""
    rng = np.random.default_rng(seed)
    region = rng.choice(REGIONS, rows).astype(object)
    age = rng.normal(45, 12, rows).round(1)
    signup = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), unit="D")
    plan = rng.choice(["yes", "no"], rows)
    score = (
        (region == "north") * 1.5
        - (region == "west") * 1.0
        + (age - 45) / 10
        + (signup.month.to_numpy() >= 7) * 1.0
        + (plan == "yes") * 0.8
        + rng.normal(0, 0.5, rows)
    )
    churned = np.where(score > 0.6, "yes", "no").astype(object)
    spend = np.exp(3 + score * 0.6 + rng.normal(0, 0.2, rows)).round(2)
    # Gaps: a tenth of regions and ages, and a few targets.
    region[rng.random(rows) < 0.1] = None
    age[rng.random(rows) < 0.1] = np.nan
    churned[rng.choice(rows, 6, replace=False)] = None
    return pd.DataFrame(
        {
            "customer_id": [f"C{100000 + i}" for i in range(rows)],
            "region": region,
            "plan": plan,
            "age": age,
            "signup": signup.strftime("%Y-%m-%d"),
            "country": "NL",
            "spend": spend,
            "churned": churned,
        }
    )


def semicolon_csv(frame: pd.DataFrame) -> bytes:
    """The table as a spreadsheet in a European locale writes it: semicolons, a byte
    order mark, and '?' for a gap."""
    text = frame.to_csv(index=False, sep=";", na_rep="?")
    return ("\ufeff" + text).encode()


def wide_frame(rows: int = 1200, seed: int = 0, stores: int = 120) -> pd.DataFrame:
    """A sales-like table whose class follows the store: a column of 120 categories, more
    than one-hot keeps, so that it is embedded; a number, and gaps among the stores."""
    rng = np.random.default_rng(seed)
    names = [f"S{i:03d}" for i in range(stores)]
    effect = dict(zip(names, rng.normal(0, 2.0, stores), strict=True))
    store = rng.choice(names, rows).astype(object)
    size = rng.normal(0, 1, rows).round(3)
    score = np.array([effect[s] for s in store]) + 0.5 * size + rng.normal(0, 0.5, rows)
    store[rng.random(rows) < 0.05] = None
    return pd.DataFrame({"store": store, "size": size, "level": np.where(score > 0, "high", "low")})
