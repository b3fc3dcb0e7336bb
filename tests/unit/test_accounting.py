"""The data-quality account: totals over batch rows, reasons, and the check itself."""

from __future__ import annotations

import json

import pandas as pd

from apistream.accounting import account_of, balances, reasons_of, verdict

BATCHES = pd.DataFrame(
    {
        "input": [10, 20], "valid": [7, 15], "quarantined": [2, 3], "duplicates": [1, 1],
        "late": [0, 1],
        "quarantined_by_reason": [
            json.dumps({"wrong_type": 2}), json.dumps({"wrong_type": 1, "blank_line": 2})
        ],
    }
)  # fmt: skip


def test_totals_and_reasons_add_up_over_batches():
    assert account_of(BATCHES) == {
        "input": 30, "valid": 22, "quarantined": 5, "duplicates": 2, "late": 1
    }  # fmt: skip
    assert reasons_of(BATCHES) == {"wrong_type": 3, "blank_line": 2}
    assert account_of(BATCHES.iloc[0:0]) == dict.fromkeys(account_of(BATCHES), 0)


def test_the_check_says_whether_every_record_is_accounted_for():
    totals = account_of(BATCHES)
    assert balances(totals)
    assert verdict(totals) == "input = valid + quarantined + duplicates + late: holds"
    lost = {**totals, "valid": totals["valid"] - 1}
    assert not balances(lost)
    assert verdict(lost).endswith(": DOES NOT HOLD")
