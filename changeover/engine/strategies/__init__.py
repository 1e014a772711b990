"""changeover.engine.strategies: one module per strategy, each with ``plan(ctx) -> Plan``
(a strategy on its own, for tests and tools) and ``advance(draft)`` (what ``engine.plan``
dispatches to once the common work is done). ``shared`` holds what several of them use.
"""
