"""Starting the demo's gateways: one failing start must not leave the others unaccounted for."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from shabari.core import BackendUnavailableError
from shabari.demo.calibration import start_all
from shabari.gateway.process import GatewayProcess


class _Fake:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.started = False

    def start(self) -> None:
        if self.fails:
            raise BackendUnavailableError("gateway exited with code 1 while starting")
        self.started = True


def test_every_start_finishes_and_the_first_error_is_raised() -> None:
    fakes = [_Fake(False), _Fake(True), _Fake(False)]
    with pytest.raises(BackendUnavailableError, match="while starting"):
        asyncio.run(start_all(cast(list[GatewayProcess], fakes)))
    # the others did start: the caller's finally (which stops all) has them to stop
    assert [f.started for f in fakes] == [True, False, True]


def test_all_good() -> None:
    fakes = [_Fake(False), _Fake(False)]
    asyncio.run(start_all(cast(list[GatewayProcess], fakes)))
    assert all(f.started for f in fakes)
