"""dbrules: derived columns for Django models, kept exact by PostgreSQL.

Public API::

    dbrules.Derived(field, expression)       # declare in Meta.rules
    dbrules.annotate_live(queryset, *fields)  # read-time values (<field>_live)
    dbrules.find_drift(model)                 # stored vs. live, set-based
    dbrules.repair(model)                     # recompute drifted values
    with dbrules.deferred(): ...              # apply aggregate deltas at commit
"""

from dbrules.core import Derived
from dbrules.maintenance import find_drift, repair
from dbrules.runtime import annotate_live, deferred, live_expression
from dbrules.version import __version__

__all__ = [
    "Derived",
    "annotate_live",
    "deferred",
    "find_drift",
    "live_expression",
    "repair",
    "__version__",
]
