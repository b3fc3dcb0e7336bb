"""What each generated line becomes: plain, one defect kind, or late (within or beyond)."""

from __future__ import annotations

import numpy as np

from apistream.config import GeneratorConfig, ValidationConfig
from apistream.reasons import DEFECT_KINDS

PLAIN = 0  # defect kind DEFECT_KINDS[i] is category i + 1
LATE_WITHIN = len(DEFECT_KINDS) + 1
LATE_BEYOND = len(DEFECT_KINDS) + 2


def defect_mask(cat: np.ndarray) -> np.ndarray:
    """Which lines are of a defect category."""
    return (cat >= 1) & (cat <= len(DEFECT_KINDS))


def defect_of(category: int) -> str:
    """The defect kind of a defect category."""
    return DEFECT_KINDS[category - 1]


def category_bounds(gen: GeneratorConfig, limits: ValidationConfig) -> np.ndarray:
    """Cumulative probabilities of categories 1..LATE_BEYOND; the rest of [0, 1) is plain.

    Stale timestamps are never made when validation has no maximum age to catch them.
    """
    probs = [getattr(gen.defects, k) for k in DEFECT_KINDS]
    if limits.max_age is None:
        probs[DEFECT_KINDS.index("stale_timestamp")] = 0.0
    return np.cumsum([*probs, gen.late_within_rate, gen.late_beyond_rate])


def choose_categories(bounds: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A category for each of n lines, drawn with the probabilities in `bounds`."""
    cat = np.searchsorted(bounds, rng.random(n), side="right") + 1
    cat[cat > LATE_BEYOND] = PLAIN
    return cat
