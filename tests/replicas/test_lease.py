"""Leader election over a Lease: the pure rules, then real electors racing on the emulator."""

from __future__ import annotations

import asyncio
import time

import pytest
from lease_api import LEASES, LeaseApiServer

from shabari.backends._k8s_api import KubeApi, KubeConfig
from shabari.core import ConfigError
from shabari.gateway.lease import Election, LeaseElector, LeaseRecord, LeaseTiming

TIMING = LeaseTiming(lease_duration_s=1.5, renew_deadline_s=1.0, retry_period_s=0.2)


def other(holder: str = "b", renew: str = "t0", rv: str = "1", transitions: int = 0
          ) -> LeaseRecord:
    return LeaseRecord(holder, 1.5, "t0", renew, transitions, f"http://{holder}", rv)


class TestElectionRules:
    def test_a_missing_or_free_lease_may_be_taken_at_once(self) -> None:
        e = Election("a", "http://a", TIMING)
        e.observe(None, 0.0)
        assert e.may_acquire(0.0)
        e.observe(LeaseRecord(None, 1.5, resource_version="3"), 0.0)
        assert e.may_acquire(0.0)

    def test_a_held_lease_expires_on_our_clock_only_when_unchanged(self) -> None:
        # duration 1.5 s less the 0.2 s observation lag (one retry period)
        e = Election("a", "http://a", TIMING)
        e.observe(other(renew="t0"), 10.0)
        assert not e.may_acquire(11.2) and e.expires_in(11.2) == pytest.approx(0.1)
        e.observe(other(renew="t1", rv="2"), 11.2)  # the holder renewed: the clock restarts
        assert not e.may_acquire(12.4)
        e.observe(other(renew="t1", rv="2"), 12.5)  # same record again: still counting
        assert e.may_acquire(12.5) and e.expires_in(12.5) == 0.0

    def test_taking_over_counts_a_transition_and_names_our_url(self) -> None:
        e = Election("a", "http://a", TIMING)
        e.observe(other(transitions=4), 0.0)
        claim = e.claim(1_700_000_000.0)
        assert claim.holder == "a" and claim.learner_url == "http://a"
        assert claim.transitions == 5 and claim.resource_version == "1"
        assert claim.acquire_time == claim.renew_time == "2023-11-14T22:13:20.000000Z"

    def test_renewing_keeps_the_acquire_time(self) -> None:
        e = Election("a", "http://a", TIMING)
        e.observe(LeaseRecord("a", 1.5, "t0", "t0", 2, "http://a", "7"), 0.0)
        claim = e.claim(1_700_000_000.0)
        assert claim.acquire_time == "t0" and claim.transitions == 2
        assert claim.renew_time != "t0"

    def test_leadership_lapses_after_the_renew_deadline(self) -> None:
        e = Election("a", "http://a", TIMING)
        rec = LeaseRecord("a", 1.5, "t0", "t0", 0, "http://a", "1")
        e.renewed(rec, 5.0)
        assert e.is_leader(5.9) and not e.is_leader(6.0)

    def test_timing_must_be_ordered(self) -> None:
        with pytest.raises(ConfigError):
            LeaseTiming(lease_duration_s=2.0, renew_deadline_s=3.0, retry_period_s=0.5)
        with pytest.raises(ConfigError):  # a candidate could take over before the holder quits
            LeaseTiming(lease_duration_s=2.0, renew_deadline_s=1.6, retry_period_s=0.5)
        t = LeaseTiming.for_duration(15.0)
        assert (t.renew_deadline_s, t.retry_period_s) == (10.0, 2.0)


async def _elector(url: str, identity: str) -> LeaseElector:
    api = KubeApi(KubeConfig(server=url, namespace="shabari"))
    await api.start()
    return LeaseElector(api, "shabari", "learner",
                        Election(identity, f"http://{identity}:8080", TIMING))


async def _a_leads_b_follows(url: str) -> tuple[LeaseElector, LeaseElector]:
    a, b = await _elector(url, "a"), await _elector(url, "b")
    await a.start()
    await _until(lambda: a.leading)
    await b.start()
    await asyncio.sleep(2 * TIMING.retry_period_s)
    assert not b.leading and b.election.leader == "a"
    return a, b


async def _until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


class TestElectionOnTheEmulator:
    async def test_exactly_one_of_three_leads_and_all_agree_on_it(
            self, leases: tuple[LeaseApiServer, str]) -> None:
        emulator, url = leases
        electors = [await _elector(url, n) for n in ("a", "b", "c")]
        try:
            for e in electors:
                await e.start()
            await _until(lambda: sum(e.leading for e in electors) == 1)
            await asyncio.sleep(3 * TIMING.retry_period_s)
            assert sum(e.leading for e in electors) == 1
            leader = next(e for e in electors if e.leading).election.identity
            assert {e.election.leader for e in electors} == {leader}
            assert {e.election.leader_url for e in electors} == {f"http://{leader}:8080"}
            lease = emulator.objects[LEASES, "shabari", "learner"].raw
            assert lease["spec"]["holderIdentity"] == leader
            assert lease["metadata"]["annotations"]["shabari.dev/learner-url"].endswith(":8080")
            # what the chart's Role grants, nothing more
            assert {v for v, _ in emulator.verbs} <= {"get", "create", "update"}
            assert {r for _, r in emulator.verbs} == {"leases"}
        finally:
            for e in electors:
                await e.stop()
                await e.api.close()

    async def test_a_dead_leader_is_replaced_within_the_lease_duration(
            self, leases: tuple[LeaseApiServer, str]) -> None:
        emulator, url = leases
        a, b = await _a_leads_b_follows(url)
        try:
            await a.stop(release=False)  # dies: no renewals, the Lease is left as it was
            died = time.monotonic()
            await _until(lambda: b.leading, timeout=5 * TIMING.lease_duration_s)
            took = time.monotonic() - died
            # expiry is judged on b's clock from the last renewal it saw, less the retry
            # period it may have seen it late, and b wakes up at the expiry: within the lease
            # duration of the last renewal (itself before the death). The slack is for a
            # loaded machine, not for the rule: without the wake-up at expiry this takes up
            # to duration + 2 retry periods, with client-go's rule duration + 1
            assert took <= TIMING.lease_duration_s + 1.0
            lease = emulator.objects[LEASES, "shabari", "learner"].raw
            assert lease["spec"]["holderIdentity"] == "b"
            assert lease["spec"]["leaseTransitions"] == 1
        finally:
            await b.stop()
            for e in (a, b):
                await e.api.close()

    async def test_a_leader_that_steps_down_hands_over_at_once(
            self, leases: tuple[LeaseApiServer, str]) -> None:
        emulator, url = leases
        a, b = await _a_leads_b_follows(url)
        try:
            await a.stop(release=True)
            # the holder is cleared, so b may take it at its next step, not after expiry
            assert emulator.holders[-1] is None
            await b.step()
            assert b.leading and b.election.leader == "b"
        finally:
            await b.stop()
            for e in (a, b):
                await e.api.close()

    async def test_racing_writers_get_409_and_only_one_wins(
            self, leases: tuple[LeaseApiServer, str]) -> None:
        emulator, url = leases
        electors = [await _elector(url, n) for n in ("a", "b", "c", "d")]
        try:
            # everyone reads the same free Lease, then everyone writes: one write wins
            await electors[0].step()
            holder = electors[0].election.identity
            await electors[0].stop(release=True)
            await asyncio.gather(*(e.step() for e in electors[1:]))
            winners = [e for e in electors[1:] if e.leading]
            assert len(winners) == 1 and winners[0].election.identity != holder
            assert emulator.conflicts >= 1 or len(electors) == 2
        finally:
            for e in electors:
                await e.stop()
                await e.api.close()
