"""The cold-start-aware scheduler (DESIGN 2): warm pod, in-place resize, cold start or queue.

Pure decision logic over a model of the pod pool; it imports only `shabari.core` and takes
`now` from its caller. See docs/scheduler.md for the rules and their rationale.
"""

from shabari.scheduler.config import NodeChoice, SchedulerConfig
from shabari.scheduler.keepalive import FixedKeepAlive, HistogramKeepAlive, KeepAlivePolicy
from shabari.scheduler.model import ClusterUsage, NodeUsage, Pod, PodEvent, PodEventKind
from shabari.scheduler.scheduler import Scheduler, can_take, queue_wait_ms

__all__ = [
    "ClusterUsage",
    "FixedKeepAlive",
    "HistogramKeepAlive",
    "KeepAlivePolicy",
    "NodeChoice",
    "NodeUsage",
    "Pod",
    "PodEvent",
    "PodEventKind",
    "Scheduler",
    "SchedulerConfig",
    "can_take",
    "queue_wait_ms",
]
