"""The Python twin of the C data path (vpp-plugin/src): reservoirs and dispatch rules."""

from marllbd.dataplane.reservoir import Reservoir, ReservoirBank, SingleMetricReservoir

__all__ = ["Reservoir", "ReservoirBank", "SingleMetricReservoir"]
