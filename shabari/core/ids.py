"""Typed identifiers, so a pod id is never passed where a function name is expected."""

from typing import NewType

FunctionName = NewType("FunctionName", str)
PodId = NewType("PodId", str)
NodeId = NewType("NodeId", str)
DecisionId = NewType("DecisionId", str)
