"""The dbrules benchmark: ``python -m bench`` (or ``python -m dbrules bench``).

Not part of the test suite; see docs/performance.md.
"""
