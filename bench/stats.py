"""The one way every benchmark measures and judges: rounds interleaved across cases (a
noisy moment on a shared machine moves one sample, not a whole figure), min / median / max
of every figure and ratio, and a verdict per target that `make bench` turns into its exit
status."""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: Rounds per figure: 5, or BENCH_ROUNDS (more on a noisy machine; fewer only to try a
#: benchmark out — such figures are not to be quoted).
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


@dataclass(frozen=True)
class Spread:
    """Samples of one figure, summarised as min / median / max."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __truediv__(self, other: Spread) -> Spread:
        """Per-round ratios: round i of this case over round i of the baseline."""
        return Spread(tuple(a / b for a, b in zip(self.values, other.values, strict=True)))

    def show(self, fmt: str = ".3g", unit: str = "") -> str:
        low, high = min(self.values), max(self.values)
        return f"{self.median:{fmt}}{unit} ({low:{fmt}}-{high:{fmt}})"


def percentile(samples: list[float], point: int) -> float:
    """The `point`-th percentile of latency samples (1-99; inclusive method: a tail from
    the samples themselves)."""
    return statistics.quantiles(samples, n=100, method="inclusive")[point - 1]


def interleave(cases: Mapping[str, Callable[[], float]], rounds: int = ROUNDS) -> dict[str, Spread]:
    """Run every case once per round, in the same order each round."""
    samples: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(rounds):
        for label, measure in cases.items():
            samples[label].append(measure())
    return {label: Spread(tuple(values)) for label, values in samples.items()}


_missed: list[str] = []


def target(
    name: str, spread: Spread, *, at_least: float | None = None, at_most: float | None = None
) -> str:
    """Judge a figure by its median; a miss is remembered for `exit_status`. Returns the
    verdict to print beside the figure."""
    if at_least is not None:
        met, bound = spread.median >= at_least, f"≥ {at_least:g}"
    else:
        assert at_most is not None
        met, bound = spread.median <= at_most, f"≤ {at_most:g}"
    if met:
        return f"target {bound}: met"
    target_missed(f"{name}: median {spread.median:.3g}, target {bound}")
    return f"target {bound}: MISSED"


def target_missed(description: str) -> None:
    """Remember a miss judged elsewhere, for `exit_status`."""
    _missed.append(description)


def exit_status(extra_failures: Iterable[str] = ()) -> int:
    """Print every missed target; 1 when there was one."""
    failures = [*_missed, *extra_failures]
    if failures:
        print("\nTargets missed:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("\nEvery target met.")
    return 0
