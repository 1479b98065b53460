"""Off-policy evaluation on a simulated decision log: the estimates cover the truth.

A simulated world (latency = work / vCPU^0.9 with noise, a fixed SLO) is served by a
stochastic logging policy whose probabilities go into a real decision log (the gateway's own
record format, `decision_record`, costed by `shabari.core.cost`). The estimators then see only
the log. The truth is obtained by running each target policy on fresh draws of the same
world; its mean cost must lie inside the 95 % interval of the IPS and DR estimates, and the
naive mean of the log (what the logging policy cost) must not.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from shabari.cli import main
from shabari.core import Decision, DecisionId, FunctionName, Outcome, Size
from shabari.core.cost import cost
from shabari.evaluation import ope
from shabari.evaluation.cli import grids_and_defaults, parse_target, read_log
from shabari.gateway.decisionlog import decision_record

GRID = [Size(c, 512) for c in (250, 500, 1000, 2000)]
LARGEST = GRID[-1]
SLO_MS = 400.0
#: the logging policy: mostly the largest size, sometimes the others (all sizes supported)
LOGGING = {GRID[0]: 0.1, GRID[1]: 0.15, GRID[2]: 0.25, GRID[3]: 0.5}


def world(rng: random.Random) -> tuple[dict[str, float], float]:
    megapixels = math.exp(rng.gauss(0.0, 0.6))
    return {"megapixels": megapixels, "bytes": 200_000 * megapixels}, megapixels


def run_at(size: Size, work: float, rng: random.Random) -> Outcome:
    latency = 120.0 * work / size.vcpu ** 0.9 * math.exp(rng.gauss(0.0, 0.15))
    return Outcome(latency_ms=latency)


def simulated_log(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    sizes, weights = list(LOGGING), list(LOGGING.values())
    with path.open("w") as out:
        for i in range(n):
            features, work = world(rng)
            size = rng.choices(sizes, weights)[0]
            outcome = run_at(size, work, rng)
            decision = Decision(DecisionId(f"d{i}"), FunctionName("resize"), size,
                                GRID.index(size), LOGGING[size], 1, "bandit")
            c = cost(size, outcome, SLO_MS, LARGEST)
            out.write(json.dumps(decision_record(
                ts=float(i), decision=decision, features=features, slo_ms=SLO_MS,
                placement=None, outcome=outcome, cost=c,
                violated=outcome.latency_ms > SLO_MS)) + "\n")


def true_cost(target: ope.TargetPolicy, n: int, seed: int) -> float:
    """The target policy run on fresh draws of the same world."""
    rng = random.Random(seed)
    total = 0.0
    for _ in range(n):
        features, work = world(rng)
        probe = ope.LoggedDecision("resize", features, GRID[0], 1.0, 0.0)
        dist = target(probe, GRID)
        size = rng.choices(list(dist), list(dist.values()))[0]
        total += cost(size, run_at(size, work, rng), SLO_MS, LARGEST)
    return total / n


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ope") / "decisions.jsonl"
    simulated_log(path, 6000, seed=1)
    return path


@pytest.mark.parametrize("policy", ["cpu=500m", "cpu=1", "static-max", "random"])
def test_estimate_covers_the_true_cost(log: Path, policy: str) -> None:
    records, safe = read_log([log])
    grids, defaults = grids_and_defaults(records, safe, None)
    target = parse_target(policy, defaults)
    result = ope.evaluate(records, grids, target, policy)
    truth = true_cost(target, 60_000, seed=12)
    assert result.cost_ips.contains(truth), (policy, truth, result.cost_ips)
    assert result.cost_dr.contains(truth), (policy, truth, result.cost_dr)
    # the interval is informative: the logging policy's own mean cost is outside it
    if policy != "static-max":
        assert not result.cost_dr.contains(result.logged_cost), (policy, result)
    # DR is at least as precise as IPS here
    assert result.cost_dr.half_width <= result.cost_ips.half_width * 1.05


def test_intervals_cover_the_truth_at_about_their_level() -> None:
    """Over 20 independent logs, the 95 % intervals miss the truth rarely (a biased estimator
    or an interval that is too narrow misses often): at least 16 of 20 must cover it."""
    target = parse_target("cpu=500m", {})
    truth = true_cost(target, 100_000, seed=99)
    covered = {"ips": 0, "dr": 0}
    for seed in range(100, 120):
        rng = random.Random(seed)
        sizes, weights = list(LOGGING), list(LOGGING.values())
        records = []
        for _ in range(3000):
            features, work = world(rng)
            size = rng.choices(sizes, weights)[0]
            c = cost(size, run_at(size, work, rng), SLO_MS, LARGEST)
            records.append(ope.LoggedDecision("resize", features, size, LOGGING[size], c))
        result = ope.evaluate(records, {"resize": GRID}, target, "cpu=500m")
        covered["ips"] += result.cost_ips.contains(truth)
        covered["dr"] += result.cost_dr.contains(truth)
    assert covered["ips"] >= 16 and covered["dr"] >= 16, covered


def test_unsupported_size_has_no_support(log: Path) -> None:
    records, safe = read_log([log])
    grids, defaults = grids_and_defaults(records, safe, None)
    result = ope.evaluate(records, grids, parse_target("cpu=4", defaults), "cpu=4")
    assert result.support == 0.0 and result.ess == 0.0
    assert result.cost_ips.value == 0.0  # IPS sees nothing; the table shows n/a
    assert math.isnan(result.cost_dr.value)  # and the direct model knows nothing of 4 vCPUs


def test_cli_prints_and_writes_json(log: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ope.json"
    assert main(["evaluate", "--log", str(log), "--policy", "cpu=500m",
                 "--policy", "static-max", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cost DR [95% CI]" in text and "cpu=500m" in text and "(logged)" in text
    doc = json.loads(out.read_text())
    assert doc["n"] == 6000 and [r["policy"] for r in doc["results"]] == ["cpu=500m",
                                                                          "static-max"]


def test_bad_policy_is_a_usable_error(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--log", str(log), "--policy", "fastest"]) == 1
    assert "expected one of static-max" in capsys.readouterr().err


def test_random_logs_weigh_the_cpu_arm_not_the_size(tmp_path: Path) -> None:
    """`random` draws memory too: its probability is of the whole size, and a CPU-only
    target must be weighed by the CPU arm's probability (here 2 memory options per CPU)."""
    grid = [Size(c, m) for c in (250, 1000) for m in (256, 512)]
    rng = random.Random(3)
    records = []
    for _ in range(4000):
        features, work = world(rng)
        size = rng.choice(grid)
        c = cost(size, run_at(size, work, rng), SLO_MS, grid[-1])
        records.append(ope.LoggedDecision("fn", features, size, 1 / len(grid), c,
                                          memory_drawn=True))
    truth_rng = random.Random(4)
    total = 0.0
    for _ in range(40_000):
        _, work = world(truth_rng)
        size = Size(1000, truth_rng.choice((256, 512)))
        total += cost(size, run_at(size, work, truth_rng), SLO_MS, grid[-1])
    truth = total / 40_000
    # 99 % intervals: one seed, two estimators; weighing by the size's probability instead
    # would double the IPS estimate (about 1.06 here), far outside
    result = ope.evaluate(records, {"fn": grid}, ope.fixed_cpu(1000), "cpu=1", z=2.576)
    assert result.cost_ips.contains(truth) and result.cost_dr.contains(truth), (truth, result)
