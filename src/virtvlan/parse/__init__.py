"""Parse layer: host config, domain/network metadata, VLAN lists -> frozen specs.

May import: virtvlan.model, virtvlan.errors (and lxml, lazily). Nothing above.
"""
