"""The demo's design arithmetic: input ranges, absolute SLOs, the oracle, allocation cost."""

from __future__ import annotations

import pytest

from shabari.demo.plan import (
    DEMO_PLAN,
    PLAN_BY_NAME,
    SizePoint,
    absolute_slo_ms,
    allocation_cost,
    menu_sizes,
    oracle_choice,
)


class TestPlan:
    def test_both_slo_forms_and_both_kinds_of_function(self) -> None:
        forms = {p.slo_form for p in DEMO_PLAN}
        assert forms == {"slowdown", "latencyMs"}
        threaded = {p.name for p in DEMO_PLAN if p.slo_form == "slowdown"}
        assert {"compress", "classify", "transcode"} <= threaded

    def test_work_feature_and_range(self) -> None:
        tr = PLAN_BY_NAME["transcode"]
        assert tr.work({"megapixels": 0.5, "frames": 40.0}) == pytest.approx(20.0)
        assert tr.in_range({"megapixels": 0.5, "frames": 40.0})
        assert not tr.in_range({"megapixels": 0.1, "frames": 5.0})  # 0.5: too light
        assert PLAN_BY_NAME["compress"].work({}) == 0.0

    def test_menu_is_the_cross_product(self) -> None:
        sizes = menu_sizes()
        assert len(sizes) == 16 and max(s.cpu_millicores for s in sizes) == 2000


class TestAbsoluteSlo:
    def test_headroom_over_the_heaviest_rounded_up(self) -> None:
        assert absolute_slo_ms([12.0, 80.0, 33.0]) == 120.0
        assert absolute_slo_ms([81.0]) == 130.0  # 121.5 -> 130

    def test_nothing_calibrated_is_an_error(self) -> None:
        with pytest.raises(ValueError):
            absolute_slo_ms([])


class TestOracle:
    PTS = (SizePoint(250, 400.0, 90.0), SizePoint(500, 200.0, 95.0),
           SizePoint(1000, 110.0, 100.0), SizePoint(2000, 100.0, 140.0))

    def test_smallest_cpu_meeting_the_bound_and_memory_above_the_peak(self) -> None:
        assert oracle_choice(self.PTS, 150.0, [128, 256, 512]) == (1000, 256)
        assert oracle_choice(self.PTS, 1000.0, [128, 256, 512]) == (250, 256)

    def test_no_size_meets(self) -> None:
        assert oracle_choice(self.PTS, 50.0, [128]) is None

    def test_allocation_cost(self) -> None:
        assert allocation_cost(500, 512, 2000.0) == pytest.approx((1.0, 1.0))


class TestInputSplit:
    def test_evenly_spaced_with_the_last(self) -> None:
        from shabari.demo import _evenly
        from shabari.runtime.catalog import GeneratedInput

        xs = [GeneratedInput(b"", "text/plain", str(i)) for i in range(10)]
        assert [x.label for x in _evenly(xs, 4)] == ["0", "3", "6", "9"]
        assert [x.label for x in _evenly(xs, 1)] == ["9"]
        assert _evenly(xs, 0) == [] and _evenly(xs, 20) == xs

    def test_stratified_split_keeps_the_tail_in_training(self) -> None:
        from shabari.demo import TRAIN_INPUTS_FACTOR, pick_inputs
        from shabari.runtime.catalog import bundled_functions

        plan = PLAN_BY_NAME["markdown"]
        replay, train, feats = pick_inputs(bundled_functions()["markdown"], plan, 1, 4, 20)
        assert len(replay) == 4 and 0 < len(train) <= TRAIN_INPUTS_FACTOR * 4
        assert len(replay) + len(train) == min(len(feats), 4 + TRAIN_INPUTS_FACTOR * 4)
        assert not {x.label for x in replay} & {x.label for x in train}
        work = {lb: plan.work(f) for lb, f in feats.items()}
        assert all(plan.lo <= w <= plan.hi for w in work.values())
        # the heaviest input trains; the replay still reaches into the tail
        assert max(work, key=work.__getitem__) in {x.label for x in train}
        ranked = sorted(work.values())
        assert max(work[x.label] for x in replay) >= ranked[len(ranked) * 3 // 4 - 1]

    def test_warm_up_covers_both_ends_of_the_training_inputs(self) -> None:
        """The warm-up starts every policy's pods with the lightest and the heaviest training
        input, so a policy that sizes by input has warm pods for both ends (a heavy input
        needing more memory otherwise cold-starts on its first replay run)."""
        from shabari.demo import TRAIN_INPUTS_FACTOR, _extremes, pick_inputs
        from shabari.runtime.catalog import bundled_functions

        plan = PLAN_BY_NAME["markdown"]
        _, train, feats = pick_inputs(bundled_functions()["markdown"], plan, 1, 4, 20)
        assert 2 <= len(train) <= TRAIN_INPUTS_FACTOR * 4
        ends = _extremes({"markdown": train})["markdown"]
        work = [plan.work(feats[x.label]) for x in train]
        assert [plan.work(feats[x.label]) for x in ends] == [min(work), max(work)]
        assert _extremes({"f": train[:1]})["f"] == train[:1]
