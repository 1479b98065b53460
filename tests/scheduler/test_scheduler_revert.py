"""A pod's life after placement: a refused in-place resize puts it back at its real size."""

from __future__ import annotations

import pytest

from shabari.core import CapacityError, NodeCapacity, NodeId, PlacementKind, Size
from shabari.core.ids import FunctionName
from shabari.scheduler import Scheduler


class TestRevertResize:
    def test_refused_resize_restores_cpu_and_node_accounting(self) -> None:
        s = Scheduler([NodeCapacity(NodeId("n"), 4000, 8192)])
        fn = FunctionName("f")
        pod = s.commit(s.place(fn, Size(500, 256), 0.0), fn, 0.0)
        s.release(pod.pod_id, 1.0)
        up = s.place(fn, Size(2000, 256), 2.0)
        assert up.kind is PlacementKind.RESIZE
        s.commit(up, fn, 2.0)
        assert s.usage().allocated_cpu_millicores == 2000
        back = s.revert_resize(pod.pod_id, Size(500, 256))
        assert back.size == Size(500, 256) and back.busy
        assert s.usage().allocated_cpu_millicores == 500
        s.release(pod.pod_id, 3.0)
        assert s.warm_idle(fn, 3.0) == (Size(500, 256),)

    def test_memory_cannot_change(self) -> None:
        s = Scheduler([NodeCapacity(NodeId("n"), 4000, 8192)])
        fn = FunctionName("f")
        pod = s.commit(s.place(fn, Size(500, 256), 0.0), fn, 0.0)
        with pytest.raises(CapacityError, match="CPU only"):
            s.revert_resize(pod.pod_id, Size(500, 512))
