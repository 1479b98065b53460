"""The vocabulary every layer shares: ids, specs, decisions, outcomes, cost, errors.

`shabari.core` imports nothing of the project (an import-linter contract enforces it), so the
agent, the scheduler, the simulator, the gateway and the operator can all speak these types
without depending on each other.
"""

from shabari.core.context import DecisionContext
from shabari.core.cost import CostModel, cost
from shabari.core.errors import (
    AdmissionError,
    BackendError,
    BackendUnavailableError,
    CapacityError,
    ConfigError,
    DataFormatError,
    FunctionFailedError,
    InvocationTimeoutError,
    OutOfMemoryError,
    PodLostError,
    ShabariError,
    SpecError,
    UnknownFunctionError,
)
from shabari.core.ids import DecisionId, FunctionName, NodeId, PodId
from shabari.core.spec import (
    MEMORY_FLOOR_MIB,
    MODES,
    SLO,
    Exploration,
    FunctionSpec,
    Size,
    size_grid,
)
from shabari.core.types import (
    Decision,
    NodeCapacity,
    Outcome,
    OutcomeStatus,
    Placement,
    PlacementKind,
)
from shabari.core.units import format_cpu, format_memory, parse_cpu, parse_memory

__all__ = [
    "MEMORY_FLOOR_MIB",
    "MODES",
    "SLO",
    "AdmissionError",
    "BackendError",
    "BackendUnavailableError",
    "CapacityError",
    "ConfigError",
    "CostModel",
    "DataFormatError",
    "Decision",
    "DecisionContext",
    "DecisionId",
    "Exploration",
    "FunctionFailedError",
    "FunctionName",
    "FunctionSpec",
    "InvocationTimeoutError",
    "NodeCapacity",
    "NodeId",
    "OutOfMemoryError",
    "Outcome",
    "OutcomeStatus",
    "Placement",
    "PlacementKind",
    "PodId",
    "PodLostError",
    "ShabariError",
    "Size",
    "SpecError",
    "UnknownFunctionError",
    "cost",
    "format_cpu",
    "format_memory",
    "parse_cpu",
    "parse_memory",
    "size_grid",
]

from shabari.core.specdict import (
    check_function_name,
    parse_sizes,
    parse_slo,
    spec_from_mapping,
    spec_to_mapping,
)

__all__ += ["check_function_name", "parse_sizes", "parse_slo", "spec_from_mapping", "spec_to_mapping"]
