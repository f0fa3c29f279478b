"""Apply layer: the executor (the only pyroute2 user), verification, and the engine that runs plan-and-apply under the lock.

May import: plan, host, parse, model, errors. pyroute2 only here, and only lazily from engine.
"""
