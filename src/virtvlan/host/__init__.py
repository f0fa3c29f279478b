"""Host layer: read-only rtnetlink (no pyroute2), the host lock, run-time state, syslog.

May import: virtvlan.model, virtvlan.errors. Never pyroute2, lxml or libvirt.
"""
