"""marllbd: control plane for learning-driven L4 load balancing."""

__version__ = "0.1.0"
