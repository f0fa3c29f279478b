"""Pure plan layer: wants + config + snapshot -> ordered actions. No I/O.

May import: virtvlan.parse, virtvlan.model, virtvlan.errors.
"""
