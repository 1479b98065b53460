"""Fixtures for the replicated gateway: the Lease-serving API emulator over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lease_api import LeaseApiServer, lease_api


@pytest.fixture
async def leases() -> AsyncIterator[tuple[LeaseApiServer, str]]:
    async with lease_api() as served:
        yield served
