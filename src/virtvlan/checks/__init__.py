"""Checks layer: pure verdicts on a snapshot against config and domains (NIC wiring, `check`, `explain`).

May import: plan, parse, model, errors. No I/O: no host reading, no libvirt, no agent (the cli reads those).
"""
