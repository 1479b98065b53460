"""Recommend -> InPlace on a running gateway: the model learned while recommending is kept."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from shabari.agent import make_policy


async def test_switching_mode_keeps_what_was_learned(gateway_factory: Any) -> None:
    async with gateway_factory(make_policy("shabari", 4)) as gw:
        gateway = gw.gateway
        spec = gateway.functions["probe"]
        recommend = dataclasses.replace(spec, mode="Recommend")
        change = await gateway.update_functions({"probe": recommend})
        assert change.changed == ("probe",) and change.fresh_models == ()
        body = json.dumps({"sleep": 0.01}).encode()
        for _ in range(4):
            status, headers, _ = await gw.invoke("probe", body)
            assert status == 200
            assert headers["X-Shabari-Cpu-Millicores"] == str(
                spec.safe_default.cpu_millicores)  # the function's own size, always
            assert "X-Shabari-Recommended" in headers
        [entry] = await gw.get_json("/functions")
        assert entry["mode"] == "Recommend" and entry["recommendation"]["invocations"] == 4
        learned = entry["learning"]

        change = await gateway.update_functions({"probe": spec})  # back to InPlace
        assert change.changed == ("probe",) and change.fresh_models == ()
        status, headers, _ = await gw.invoke("probe", body)
        assert status == 200 and "X-Shabari-Recommended" not in headers
        [entry] = await gw.get_json("/functions")
        assert entry["mode"] == "InPlace" and "recommendation" not in entry
        # the four outcomes at the own size are still in the model, plus this one
        assert entry["learning"]["model_version"] == learned["model_version"] + 1
