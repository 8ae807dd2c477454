"""The timing protocol, on a fake clock: each fake model advances the clock by scripted times."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import torch

from autoprune.errors import LatencyModelError
from autoprune.latency import protocol as proto
from autoprune.latency.protocol import Measurement, Protocol, measure, thread_limit


class FakeClock:
    def __init__(self) -> None:
        self.ns = 0
        self.calls: list[str] = []

    def __call__(self) -> int:
        return self.ns

    def model(self, name: str, durations_ms: Iterator[float]):
        def run() -> None:
            self.calls.append(name)
            self.ns += int(next(durations_ms) * 1e6)
        return run


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(proto.time, "perf_counter_ns", fake)
    return fake


def _repeat(value: float) -> Iterator[float]:
    while True:
        yield value


SIMPLE = Protocol(rounds=5, min_repeats=2, max_repeats=2, warmup=1, extra_rounds=0)


def test_steady_model_gives_its_time_and_a_zero_band(clock: FakeClock) -> None:
    result = measure({"a": clock.model("a", _repeat(4.0))}, SIMPLE)
    m = result["a"]
    assert m.median_ms == pytest.approx(4.0)
    assert m.p10_ms == pytest.approx(4.0) and m.p90_ms == pytest.approx(4.0)
    assert m.rounds == 5 and m.repeats == 2 and not m.remeasured
    assert m.spread == 0.0


def test_minimum_within_round_and_median_over_rounds(clock: FakeClock) -> None:
    # warm-up 1 call, then 5 rounds x 2 repeats: the minimum of each pair is taken,
    # and one round whose both calls were slow (a neighbour's burst) is out-voted by the median.
    script = iter([9.0] + [5.0, 3.0] + [3.0, 7.0] + [30.0, 40.0] + [3.0, 3.5] + [3.2, 3.1])
    m = measure({"a": clock.model("a", script)}, SIMPLE)["a"]
    assert m.round_minima_ms == pytest.approx((3.0, 3.0, 30.0, 3.0, 3.1))
    assert m.median_ms == pytest.approx(3.0)
    assert m.p90_ms > 10.0  # the burst shows in the recorded spread


def test_rounds_interleave_the_models(clock: FakeClock) -> None:
    models = {name: clock.model(name, _repeat(1.0)) for name in "abc"}
    measure(models, Protocol(rounds=4, min_repeats=1, max_repeats=1, warmup=1, extra_rounds=0))
    timed = clock.calls[3:]  # after one warm-up call each
    rounds = [timed[i:i + 3] for i in range(0, len(timed), 3)]
    assert len(rounds) == 4
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)  # every model once per round


def test_fast_models_get_more_repeats(clock: FakeClock) -> None:
    p = Protocol(rounds=2, min_repeats=1, max_repeats=10, round_target_ms=10.0, warmup=1, extra_rounds=0)
    result = measure({"fast": clock.model("fast", _repeat(1.0)), "slow": clock.model("slow", _repeat(20.0))}, p)
    assert result["fast"].repeats == 10
    assert result["slow"].repeats == 1


def test_wide_spread_is_remeasured_only_for_that_model(clock: FakeClock) -> None:
    noisy = iter([5.0] + [5.0, 10.0, 5.0, 10.0, 5.0] + [5.0] * 50)
    p = Protocol(rounds=5, min_repeats=1, max_repeats=1, warmup=1, max_spread=0.2, extra_rounds=4)
    result = measure({"noisy": clock.model("noisy", noisy), "calm": clock.model("calm", _repeat(2.0))}, p)
    assert result["noisy"].remeasured and result["noisy"].rounds > 5
    assert not result["calm"].remeasured and result["calm"].rounds == 5
    assert result["noisy"].median_ms == pytest.approx(5.0)


def test_gc_is_off_while_timing_and_restored(clock: FakeClock) -> None:
    seen: list[bool] = []

    def run() -> None:
        seen.append(gc.isenabled())
        clock.ns += 1_000_000

    assert gc.isenabled()
    measure({"a": run}, Protocol(rounds=2, min_repeats=1, max_repeats=1, warmup=1, extra_rounds=0))
    assert seen[1:] == [False, False]  # warm-up may run with gc on; timed calls never
    assert gc.isenabled()


def test_thread_count_is_fixed_while_measuring_and_restored(clock: FakeClock) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []

    def run() -> None:
        seen.append(torch.get_num_threads())
        clock.ns += 1_000_000

    measure({"a": run}, Protocol(rounds=1, min_repeats=1, max_repeats=1, warmup=1, extra_rounds=0), threads=1)
    assert set(seen) == {1}
    assert torch.get_num_threads() == before
    with pytest.raises(LatencyModelError), thread_limit(0):
        pass


def test_modules_are_called_with_inputs_under_inference_mode(clock: FakeClock) -> None:
    grads: list[bool] = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            grads.append(torch.is_inference_mode_enabled())
            clock.ns += 1_000_000
            return x * 2

    result = measure({"m": Probe()}, SIMPLE, inputs={"x": torch.ones(2)})
    assert result["m"].median_ms == pytest.approx(1.0)
    assert all(grads)
    with pytest.raises(LatencyModelError, match="inputs"):
        measure({"m": Probe()}, SIMPLE)


def test_measurement_round_trips_through_a_dict() -> None:
    m = Measurement(2.0, 1.9, 2.3, rounds=7, repeats=3, remeasured=True, round_minima_ms=(1.9, 2.0, 2.3))
    assert Measurement.from_dict(m.to_dict()) == m
    assert m.spread == pytest.approx(0.2)


def test_bad_protocol_is_rejected() -> None:
    with pytest.raises(LatencyModelError):
        Protocol(rounds=0)


def test_a_reference_cancels_load_that_slows_whole_rounds(clock: FakeClock) -> None:
    # Rounds 2 and 4 run 3x slower for everyone (a neighbour's job); relative to the reference
    # of the same round the model is always at 0.5x, so its figure is 0.5 x reference median.
    load = [1.0, 3.0, 1.0, 3.0, 1.0]
    ref_times = iter([2.0] + [2.0 * f for f in load])
    model_times = iter([1.0] + [1.0 * f for f in load])
    p = Protocol(rounds=5, min_repeats=1, max_repeats=1, warmup=1, extra_rounds=3, max_spread=0.1)
    result = measure({"ref": clock.model("ref", ref_times), "m": clock.model("m", model_times)}, p,
                     reference="ref")
    assert result["ref"].median_ms == pytest.approx(2.0)
    assert result["m"].median_ms == pytest.approx(1.0)
    assert result["m"].spread == pytest.approx(0.0)  # no re-measurement needed
    assert not result["m"].remeasured
    with pytest.raises(LatencyModelError, match="reference"):
        measure({"m": clock.model("m", _repeat(1.0))}, p, reference="missing")
