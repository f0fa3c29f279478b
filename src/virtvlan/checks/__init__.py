"""Checks layer: pure audits of a snapshot against config and domains (`check`, `explain`, NIC wiring).

May import: plan, host, parse, model, errors. No I/O of its own, no libvirt, no pyroute2.
"""
