"""One benchmark measurement in a process of its own, so each variant gets
its own peak RSS and only the computedfields run has computedfields'
global signal receivers connected.

``python -m bench.worker '{"task": "bulk", "variant": "dbrules", ...}'``
prints one JSON object. DATABASE_URL names the server.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import Any


def disconnect_computedfields() -> None:
    from django.db.models import signals

    for signal, uid in [
        (signals.pre_save, "COMP_FIELD_PRESAVE"),
        (signals.post_save, "COMP_FIELD"),
        (signals.pre_delete, "COMP_FIELD_PREDELETE"),
        (signals.post_delete, "COMP_FIELD_POSTDELETE"),
        (signals.m2m_changed, "COMP_FIELD_M2M"),
    ]:
        signal.disconnect(dispatch_uid=uid)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.settings import configure

    configure(os.environ["DATABASE_URL"], spec["database"])
    if spec.get("variant") != "computedfields":
        disconnect_computedfields()
    from bench import workloads

    task = spec["task"]
    args = {k: v for k, v in spec.items() if k not in {"task", "database"}}
    result = getattr(workloads, task)(**args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
