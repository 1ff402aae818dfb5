"""Learned load-balancing policies for marllbd (SAC-GRU, QMIX): the only code that imports torch.

Installed with the `rl` extra; each policy registers in the `marllbd.policies`
entry-point group and loads from a safe checkpoint (see checkpoint.py).
"""
