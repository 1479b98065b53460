"""`shabari explain` on a gateway's state dir: for an input file and for a logged decision."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import featurizers
from shabari.agent import ShabariAgent
from shabari.cli import main
from shabari.core import DecisionContext, FunctionName, Outcome
from shabari.core.cost import cost
from shabari.gateway.cli import bundled_entries
from shabari.gateway.decisionlog import decision_record

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A state dir as the gateway leaves it: a model checkpoint and a decision log."""
    sys.path.insert(0, str(REPO / "functions" / "thumbnail"))
    from inputs import generate

    spec = bundled_entries(["thumbnail"])["thumbnail"].spec
    agent = ShabariAgent(1)
    root = tmp_path_factory.mktemp("state")
    (root / "models").mkdir()
    images = generate(3, 12)
    with (root / "decisions.jsonl").open("w") as log:
        for i, (body, ctype, _) in enumerate(images * 3):
            features = featurizers.extract(body, ctype, spec.featurizer)
            ctx = DecisionContext(spec=spec, features=features, now=float(i),
                                  warm_idle=spec.sizes, slo_ms=200.0)
            d = agent.decide(ctx)
            # megapixels x 100 ms at 1 vCPU, using all of the CPU it has up to 1 vCPU
            run_ms = 100.0 * features["megapixels"] / min(d.size.vcpu, 1.0)
            outcome = Outcome(latency_ms=run_ms, cpu_seconds=run_ms / 1000 * min(d.size.vcpu,
                                                                                  1.0),
                              peak_memory_mib=60.0)
            agent.learn(ctx, d, outcome)
            log.write(json.dumps(decision_record(
                ts=0.0, decision=d, features=features, slo_ms=200.0, placement=None,
                outcome=outcome, cost=cost(d.size, outcome, 200.0, spec.largest),
                violated=outcome.latency_ms > 200.0)) + "\n")
    (root / "models" / "thumbnail.ckpt").write_bytes(agent.checkpoint(FunctionName("thumbnail")))
    image = root / "input.jpg"
    image.write_bytes(images[0][0])
    return root, image, d.decision_id


def test_explain_an_input(state: tuple[Path, Path, str],
                          capsys: pytest.CaptureFixture[str]) -> None:
    root, image, _ = state
    assert main(["explain", "thumbnail", "--input", str(image), "--content-type",
                 "image/jpeg", "--state-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "function thumbnail: policy shabari" in out and "model version 36" in out
    assert "why: " in out and "megapixels=" in out
    rows = [line for line in out.splitlines() if line.startswith("  cpu=")]
    assert len(rows) == 4  # one per CPU of the thumbnail grid
    # the input's class has run: the sizes it ran at have run-time estimates
    assert any(" sure " in r or " misses " in r or " possible " in r for r in rows)


def test_explain_a_logged_decision_as_json(state: tuple[Path, Path, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    root, _, decision_id = state
    assert main(["explain", "thumbnail", "--decision", decision_id, "--state-dir", str(root),
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["decision"]["decision_id"] == decision_id
    assert doc["sloMs"] == 200.0 and len(doc["sizes"]) == 4
    assert abs(sum(s["probability"] for s in doc["sizes"]) - 1.0) < 1e-9


def test_unknown_decision_is_a_usable_error(state: tuple[Path, Path, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root, _, _ = state
    assert main(["explain", "thumbnail", "--decision", "nope", "--state-dir", str(root)]) == 1
    assert "decision 'nope' is not in" in capsys.readouterr().err


def test_evaluate_the_learned_model_and_its_settings(
        state: tuple[Path, Path, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--policy shabari[:settings]`: the checkpointed model, frozen, as a target policy."""
    root, _, _ = state
    out = tmp_path / "ope.json"
    assert main(["evaluate", "--log", str(root / "decisions.jsonl"), "--state-dir", str(root),
                 "--policy", "shabari", "--policy", "shabari:enabled=false",
                 "--json", str(out)]) == 0
    results = {r["policy"]: r for r in json.loads(out.read_text())["results"]}
    learned = results["shabari"]
    # the frozen model picks among the thumbnail grid's CPUs (0.25 .. 2 vCPU) ...
    assert 0.25 <= learned["vcpu_per_invocation"] <= 2.0
    # ... and the log it learned from ran what it picks for most inputs
    assert learned["support"] > 0.5
    assert results["shabari:enabled=false"]["support"] > 0.5
    assert main(["evaluate", "--log", str(root / "decisions.jsonl"), "--policy",
                 "shabari"]) == 1
    assert "needs --state-dir" in capsys.readouterr().err
    assert main(["evaluate", "--log", str(root / "decisions.jsonl"), "--state-dir",
                 str(root), "--policy", "shabari:speed=11"]) == 1
    assert "unknown setting" in capsys.readouterr().err
