"""The data-quality account, defined once: every input record is valid, quarantined, a
duplicate or late, so input = valid + quarantined + duplicates + late holds for every batch
and any set of batches. Totals over `data_quality` rows (one per micro-batch, as SQLite
keeps them; the `data_quality_totals` view is the same sum in SQL) and the check itself."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd

OUTCOMES = ("valid", "quarantined", "duplicates", "late")
ACCOUNT = ("input", *OUTCOMES)
EQUATION = "input = valid + quarantined + duplicates + late"


def account_of(batches: pd.DataFrame) -> dict[str, int]:
    """input and each outcome summed over `data_quality` rows (zeros without rows)."""
    return {k: int(batches[k].sum()) if len(batches) else 0 for k in ACCOUNT}


def reasons_of(batches: pd.DataFrame) -> dict[str, int]:
    """Quarantined records per reason over `data_quality` rows (their JSON per batch)."""
    totals: dict[str, int] = {}
    for text in batches.get("quarantined_by_reason", pd.Series(dtype=str)):
        for reason, n in json.loads(text).items():
            totals[reason] = totals.get(reason, 0) + int(n)
    return totals


def balances(totals: Mapping[str, int]) -> bool:
    """Whether the account holds: input = valid + quarantined + duplicates + late."""
    return totals["input"] == sum(totals[k] for k in OUTCOMES)


def verdict(totals: Mapping[str, int]) -> str:
    """The equation and whether it holds, as the summary, report and dashboard print it."""
    return f"{EQUATION}: {'holds' if balances(totals) else 'DOES NOT HOLD'}"
