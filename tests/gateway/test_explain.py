"""`GET|POST /functions/{name}/explain`: the policy's reasons, from a real gateway."""

from __future__ import annotations

import json
from typing import Any

from shabari.agent import make_policy


class TestExplainEndpoint:
    async def test_post_an_input_then_get_by_features(self, gateway_factory: Any
                                                      ) -> None:
        async with gateway_factory(make_policy("shabari", 1)) as gw:
            body = json.dumps({"sleep": 0.01}).encode()
            for _ in range(3):  # something to learn from
                status, _, _ = await gw.invoke("probe", body)
                assert status == 200
            async with gw.session.post(gw.url("/functions/probe/explain"), data=body,
                                       headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200
                doc = await r.json()
            assert doc["function"] == "probe" and doc["policy"] == "shabari"
            assert doc["features"]["bytes"] == len(body)
            assert len(doc["sizes"]) == 2  # one per CPU of the probe's grid
            assert abs(sum(s["probability"] for s in doc["sizes"]) - 1.0) < 1e-9
            assert doc["why"] and doc["mode"] == "InPlace"
            # the input's class has run: its run time is known at the size that ran
            assert any(s["runs"] > 0 and s["latencyHighMs"] is not None for s in doc["sizes"])
            async with gw.session.get(gw.url("/functions/probe/explain"),
                                      params={"bytes": str(len(body))}) as r:
                assert r.status == 200
                assert (await r.json())["features"] == {"bytes": float(len(body))}

    async def test_errors(self, gateway_factory: Any) -> None:
        async with gateway_factory(make_policy("static-max")) as gw:
            async with gw.session.get(gw.url("/functions/nope/explain")) as r:
                assert r.status == 404
            async with gw.session.get(gw.url("/functions/probe/explain"),
                                      params={"bytes": "many"}) as r:
                assert r.status == 400
            async with gw.session.get(gw.url("/functions/probe/explain")) as r:
                doc = await r.json()
                assert r.status == 200 and doc["policy"] == "static-max"
                assert [s["probability"] for s in doc["sizes"]].count(1.0) == 1
