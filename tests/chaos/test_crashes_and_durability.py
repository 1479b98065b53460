"""Crashes and durability (issue #13 items 1, 5, 8, 9, 15, 17): what the gateway learned and
left behind when it is SIGKILLed, its disk fills up, or its state dir holds bad files."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from harness import PROBE, ROOT, cgroup_trees, fill, wait_until

MAGIC = len(b"SHABARI-AGENT-2\n")


def outcomes(gw) -> int:
    fns = gw.request("GET", "/functions").json()
    return int(next(f for f in fns if f["name"] == "probe")["learning"]["outcomes"])


def checkpoint_meta(path: Path) -> dict:
    """The JSON header of an agent checkpoint (magic, 4-byte length, JSON, VW bytes)."""
    try:
        data = path.read_bytes()
    except OSError:
        return {}
    (n,) = struct.unpack_from(">I", data, MAGIC)
    return json.loads(data[MAGIC + 4:MAGIC + 4 + n])


def decision_ids(state: Path) -> list[str]:
    ids = []
    for f in state.glob("decisions.jsonl*"):
        ids += [json.loads(line)["decision_id"] for line in f.read_text().splitlines() if line]
    return ids


class TestSigkill:
    def test_learning_is_on_disk_within_the_checkpoint_interval(self, gateway, tmp_path):
        """Item 5: a SIGKILL loses at most one checkpoint interval of learning."""
        gw = gateway(args=("--checkpoint-interval", "1"))
        for i in range(12):
            assert gw.invoke({"mb": 1 + i % 3}).status == 200
        before = outcomes(gw)
        assert before == 12
        ckpt = gw.state_dir / "models" / "probe.ckpt"
        # within an interval (and no shutdown) the file holds every outcome so far
        assert wait_until(lambda: checkpoint_meta(ckpt).get("function", {}).get("outcomes") == before, 20)
        gw.kill()
        again = gateway(args=("--checkpoint-interval", "1"))
        assert outcomes(again) == before

    def test_a_busy_model_is_written_before_the_interval_ends(self, gateway):
        """Item 5: a model that learned 20 outcomes (over 5% of what it knows) since its last
        write is written at the next sweep, even with an hour-long interval."""
        gw = gateway(args=("--checkpoint-interval", "3600"))
        for _ in range(25):
            assert gw.invoke({"mb": 1}).status == 200
        ckpt = gw.state_dir / "models" / "probe.ckpt"
        assert wait_until(lambda: checkpoint_meta(ckpt).get("function", {}).get(
            "outcomes", 0) >= 20, 20)
        gw.kill()
        assert outcomes(gateway(args=("--checkpoint-interval", "3600"))) >= 20

    def test_decision_ids_do_not_repeat_across_restarts(self, gateway):
        """Item 8: ids are unique per process, so restarts on one state dir never reuse one."""
        gw = gateway(args=("--checkpoint-interval", "1"))
        first = {gw.invoke({"mb": 1}).headers["X-Shabari-Decision-Id"] for _ in range(5)}
        assert gw.terminate() == 0
        again = gateway()
        second = {again.invoke({"mb": 1}).headers["X-Shabari-Decision-Id"] for _ in range(5)}
        assert len(first) == len(second) == 5
        assert not first & second
        assert again.terminate() == 0
        ids = decision_ids(again.state_dir)
        assert len(ids) == 10 and len(set(ids)) == 10

    def test_restart_right_after_sigkill_reaps_cgroups_and_temp_dirs(self, gateway):
        """Item 15: a restart at once after a SIGKILL (the killed gateway not yet reaped:
        a zombie) removes its cgroup tree and its `shabari-local-*` temp dir."""
        gw = gateway()
        assert gw.invoke({"mb": 1}).status == 200
        pid = gw.pid
        tmp = Path(tempfile.gettempdir())
        assert list(tmp.glob(f"shabari-local-{pid}-*"))
        trees = cgroup_trees(pid)
        os.kill(pid, signal.SIGKILL)  # not waited for: the process stays a zombie
        again = gateway()
        assert not list(tmp.glob(f"shabari-local-{pid}-*"))
        assert not [t for t in trees if t.exists()]
        assert again.invoke({"mb": 1}).status == 200
        gw.proc.wait(10)


class TestBadState:
    def test_function_names_that_are_not_dns_labels_are_refused_at_load(self, tmp_path):
        """Item 9: `../escape` never becomes a path: the gateway refuses to start, naming it."""
        cfg = tmp_path / "functions.yaml"
        cfg.write_text(json.dumps({"functions": {"../escape": PROBE}}))
        state = tmp_path / "state"
        r = subprocess.run(
            [sys.executable, "-m", "shabari.cli", "gateway", "--config", str(cfg), "--port", "0",
             "--state-dir", str(state)], capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert r.returncode != 0
        assert "'../escape'" in r.stderr and "DNS-1123" in r.stderr
        assert not (tmp_path / "escape.ckpt").exists() and not state.exists()

    def test_a_checkpoint_with_truncated_model_bytes_is_refused_loudly(self, gateway):
        """Item 17: a valid checksum over truncated VW bytes is not a valid checkpoint."""
        gw = gateway()
        for _ in range(5):
            assert gw.invoke({"mb": 1}).status == 200
        assert gw.terminate() == 0
        ckpt = gw.state_dir / "models" / "probe.ckpt"
        data = ckpt.read_bytes()
        (n,) = struct.unpack_from(">I", data, MAGIC)
        magic_len = MAGIC
        meta = json.loads(data[magic_len + 4:magic_len + 4 + n])
        vw = data[magic_len + 4 + n:]
        assert meta["vw_sha256"] == hashlib.sha256(vw).hexdigest()  # the layout we think
        short = vw[: len(vw) // 2]
        meta["vw_sha256"] = hashlib.sha256(short).hexdigest()
        header = json.dumps(meta).encode()
        ckpt.write_bytes(data[:magic_len] + struct.pack(">I", len(header)) + header + short)
        again = gateway()
        assert outcomes(again) == 0
        assert "REFUSED" in again.log.read_text()
        assert (ckpt.parent / "probe.ckpt.rejected").exists()

    def test_a_checkpoint_with_impossible_counters_is_refused(self, gateway):
        gw = gateway()
        assert gw.invoke({"mb": 1}).status == 200
        assert gw.terminate() == 0
        ckpt = gw.state_dir / "models" / "probe.ckpt"
        data = ckpt.read_bytes()
        meta = checkpoint_meta(ckpt)
        (n,) = struct.unpack_from(">I", data, MAGIC)
        meta["function"]["outcomes"] = -7
        header = json.dumps(meta).encode()
        ckpt.write_bytes(data[:MAGIC] + struct.pack(">I", len(header)) + header
                         + data[MAGIC + 4 + n:])
        again = gateway()
        assert outcomes(again) == 0
        assert "impossible counters" in again.log.read_text()


@pytest.mark.slow
class TestFullDisk:
    def test_a_full_state_disk_degrades_then_recovers_and_shutdown_still_cleans_up(
            self, gateway, tiny_disk):
        """Item 1: with the state dir full, invocations still succeed, idle pods still expire,
        /readyz says degraded; once space is back the held records are written; a SIGTERM on
        a full disk still stops every pod and removes the cgroup tree."""
        gw = gateway(state_dir=tiny_disk, args=("--keep-alive", "2", "--checkpoint-interval",
                                                "1"))
        assert gw.invoke({"mb": 1}).status == 200
        filler = fill(tiny_disk)
        for _ in range(6):
            assert gw.invoke({"mb": 1}).status == 200
        assert wait_until(lambda: gw.request("GET", "/readyz").status == 503, 20)
        assert "decision_log" in gw.request("GET", "/readyz").json()["detail"]
        # the sweeper survived: idle pods still expire after their keep-alive
        assert wait_until(lambda: not gw.workers(), 30)
        assert gw.metric("shabari_background_errors_total") >= 1
        filler.unlink()
        assert wait_until(lambda: gw.request("GET", "/readyz").status == 200, 20)
        lines = (tiny_disk / "decisions.jsonl").read_text().splitlines()
        assert len(lines) == 7 and all(json.loads(x) for x in lines)
        # full again at shutdown: checkpoint fails, the rest still happens
        assert gw.invoke({"mb": 1}).status == 200
        workers = gw.workers()
        assert workers
        trees = cgroup_trees(gw.pid)
        fill(tiny_disk)
        assert gw.terminate() == 0
        assert not [p for p in workers if Path(f"/proc/{p}").exists()]
        assert not [t for t in trees if t.exists()]
