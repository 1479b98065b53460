"""End to end: real HTTP -> gateway -> agent/scheduler -> local backend -> real worker processes.

Each class is one promise of DESIGN 4.3 / issue 4: sizing headers, OOM retry with escalated
memory, a killed worker, malformed inputs, the body limit, overload shedding with nothing lost,
and models restored after a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path
from typing import Any

from shabari.agent import AgentConfig, MemoryConfig, ShabariAgent, StaticMax
from shabari.gateway.decisionlog import read_decision_log

GatewayFactory = Any  # the `gateway_factory` fixture of conftest.py

SMALL = json.dumps({"mb": 1}).encode()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class TestSizingHeaders:
    async def test_headers_reflect_the_decision(self, gateway_factory: GatewayFactory,
                                                tmp_path: Path) -> None:
        async with gateway_factory(StaticMax(), state_dir=tmp_path) as gw:
            s1, h1, b1 = await gw.invoke("probe", SMALL)
            s2, h2, _ = await gw.invoke("probe", SMALL)
            async with gw.session.get(gw.url("/metrics")) as r:
                metrics = await r.text()
        assert s1 == s2 == 200 and json.loads(b1)["ok"] is True
        assert h1["X-Shabari-Cpu-Millicores"] == "500" and h1["X-Shabari-Memory-Mib"] == "512"
        assert h1["X-Shabari-Gpu"] == "0"
        assert h1["X-Shabari-Cold-Start"] == "true" and h2["X-Shabari-Cold-Start"] == "false"
        assert float(h2["X-Shabari-Latency-Ms"]) > 0
        records = read_decision_log(tmp_path / "decisions.jsonl")
        by_id = {r["decision_id"]: r for r in records}
        rec = by_id[h2["X-Shabari-Decision-Id"]]
        assert rec["action"]["cpu_millicores"] == 500 and rec["action"]["memory_mib"] == 512
        assert rec["outcome"]["status"] == "ok" and rec["placement"]["kind"] == "warm"
        assert rec["outcome"]["latency_ms"] == float(h2["X-Shabari-Latency-Ms"]) or abs(
            rec["outcome"]["latency_ms"] - float(h2["X-Shabari-Latency-Ms"])) < 0.01
        assert metric(metrics, "shabari_invocations_total", function="probe", status="ok") == 2
        assert metric(metrics, "shabari_cold_starts_total", function="probe") == 1


class TestOomRetry:
    async def test_undersized_memory_is_retried_with_more(self, gateway_factory: GatewayFactory,
                                                          tmp_path: Path) -> None:
        agent = ShabariAgent(7, AgentConfig(safe_start_outcomes=3,
                                            memory=MemoryConfig(min_samples=4)))
        async with gateway_factory(agent, state_dir=tmp_path, keep_alive_s=0.5,
                                   sweep_interval_s=0.1) as gw:
            last: dict[str, str] = {}
            for _ in range(25):
                status, last, _ = await gw.invoke("probe", SMALL)
                assert status == 200
                if last["X-Shabari-Memory-Mib"] == "128":
                    break
            # precondition: the agent learned that inputs like this need little memory
            assert last["X-Shabari-Memory-Mib"] == "128", last
            # let the warm (bigger) pods expire, so the next decision gets a pod of its own size
            for _ in range(100):
                if not gw.gateway.scheduler.pods():
                    break
                await asyncio.sleep(0.1)
            assert not gw.gateway.scheduler.pods()
            big = json.dumps({"mb": 300}).encode()  # same features, much more memory
            status, headers, body = await gw.invoke("probe", big)
        assert status == 200, body
        assert headers["X-Shabari-Retried"] == "oom"
        assert headers["X-Shabari-Memory-Mib"] == "512"
        records = read_decision_log(tmp_path / "decisions.jsonl")
        final = next(r for r in records if r["decision_id"] == headers["X-Shabari-Decision-Id"])
        first = next(r for r in records if r["decision_id"] == final["retry_of"])
        assert first["outcome"]["status"] == "oom" and first["action"]["memory_mib"] == 128
        assert final["attempt"] == 2 and final["outcome"]["status"] == "ok"


class TestWorkerKilled:
    async def test_502_with_detail_then_the_pool_recovers(self, gateway_factory: GatewayFactory
                                                          ) -> None:
        async with gateway_factory(StaticMax()) as gw:
            assert (await gw.invoke("probe", SMALL))[0] == 200  # a warm pod exists
            task = asyncio.create_task(gw.invoke("probe", json.dumps({"sleep": 20}).encode()))
            backend = gw.gateway.backend
            for _ in range(200):
                await asyncio.sleep(0.05)
                if gw.gateway.admission.running == 1:
                    break
            await asyncio.sleep(0.3)  # the request is inside the worker now
            (pod_id,) = backend.pod_ids()  # type: ignore[attr-defined]
            os.kill(backend.pod_pid(pod_id), signal.SIGKILL)  # type: ignore[attr-defined]
            status, headers, body = await asyncio.wait_for(task, 15)
            assert status == 502
            err = json.loads(body)
            assert err["error"] and err["detail"]
            assert "X-Shabari-Decision-Id" in headers
            status, headers, _ = await gw.invoke("probe", SMALL)
            assert status == 200 and headers["X-Shabari-Cold-Start"] == "true"
            stats = gw.gateway.stats["probe"]
            assert stats.failures == 1 and stats.invocations == 3


class TestMalformedInputs:
    async def test_malformed_inputs_are_still_served(self, gateway_factory: GatewayFactory,
                                                     tmp_path: Path) -> None:
        junk = b"\xff\xd8\xff\xe0 this is not a jpeg \x00\x01" * 10
        async with gateway_factory(StaticMax(), ("probe", "thumbnail"), state_dir=tmp_path) as gw:
            s_probe, h_probe, b_probe = await gw.invoke("probe", b"{not json", "application/json")
            s_img, h_img, b_img = await gw.invoke("thumbnail", junk, "image/jpeg")
        # the probe copes with junk: a normal answer, decided on fallback features
        assert s_probe == 200 and json.loads(b_probe) == {"echo_bytes": 9}
        # the thumbnail function raises on junk: a JSON 502, still decided and logged
        assert s_img == 502
        assert json.loads(b_img)["error"] == "function raised an error"
        assert h_img["X-Shabari-Cpu-Millicores"] == "2000"
        recs = {r["decision_id"]: r for r in read_decision_log(tmp_path / "decisions.jsonl")}
        for h in (h_probe, h_img):
            feats = recs[h["X-Shabari-Decision-Id"]]["features"]
            assert feats["malformed"] == 1.0 and feats["bytes"] > 0


class TestBodyLimit:
    async def test_oversize_body_gets_413(self, gateway_factory: GatewayFactory) -> None:
        async with gateway_factory(StaticMax(), max_body_bytes=1000) as gw:
            status, headers, body = await gw.invoke("probe", b"x" * 5000)
            assert status == 413 and headers["Content-Type"].startswith("application/json")
            assert "limit" in json.loads(body)["detail"]
            assert (await gw.invoke("probe", b"x" * 500))[0] == 200
            assert (await gw.invoke("nope", b"{}"))[0] == 404


class TestOverload:
    async def test_burst_is_shed_and_nothing_is_lost(self, gateway_factory: GatewayFactory,
                                                     tmp_path: Path) -> None:
        slow = json.dumps({"sleep": 0.3}).encode()
        async with gateway_factory(StaticMax(), max_concurrent=1, max_queue=2,
                                   state_dir=tmp_path) as gw:
            assert (await gw.invoke("probe", SMALL))[0] == 200
            results = await asyncio.gather(*(gw.invoke("probe", slow) for _ in range(12)))
            async with gw.session.get(gw.url("/metrics")) as r:
                metrics = await r.text()
            served = gw.gateway.stats["probe"].invocations
        codes = [s for s, _, _ in results]
        assert len(codes) == 12 and set(codes) <= {200, 429, 503}
        assert codes.count(429) >= 1 and codes.count(200) >= 3
        for s, h, b in results:
            if s != 200:
                assert int(h["Retry-After"]) >= 1 and json.loads(b)["error"]
        route = "/invoke/{function}"
        for code in (200, 429, 503):
            expected = codes.count(code) + (1 if code == 200 else 0)
            assert metric(metrics, "shabari_http_requests_total", route=route,
                          code=str(code)) == expected
        assert served == codes.count(200) + 1
        assert metric(metrics, "shabari_admission_shed_total", reason="queue_full") == \
            codes.count(429)
        assert len(read_decision_log(tmp_path / "decisions.jsonl")) == served


class TestRestart:
    async def test_models_are_restored_and_decisions_continue(
            self, gateway_factory: GatewayFactory, tmp_path: Path) -> None:
        cfg = AgentConfig(safe_start_outcomes=4)
        async with gateway_factory(ShabariAgent(3, cfg), state_dir=tmp_path) as gw:
            for _ in range(6):
                assert (await gw.invoke("probe", SMALL))[0] == 200
            before = {f["name"]: f for f in await gw.get_json("/functions")}["probe"]
        assert (tmp_path / "models" / "probe.ckpt").is_file()
        assert before["learning"]["outcomes"] == 6
        async with gateway_factory(ShabariAgent(3, cfg), state_dir=tmp_path) as gw:
            assert gw.gateway.restored["probe"] == before["learning"]["model_version"]
            after = {f["name"]: f for f in await gw.get_json("/functions")}["probe"]
            assert after["learning"]["outcomes"] == 6
            status, headers, _ = await gw.invoke("probe", SMALL)
            assert status == 200
        recs = {r["decision_id"]: r for r in read_decision_log(tmp_path / "decisions.jsonl")}
        rec = recs[headers["X-Shabari-Decision-Id"]]
        # a fresh model would still be in safe start; the restored one is past it
        assert rec["reason"] != "safe-start"
        assert rec["model_version"] >= before["learning"]["model_version"]
