"""`dyntel status [--endpoint URL] [--json]`: each rule's state and each queue's counts (in, out, dropped by
reason, size, capacity) in a running dyntel, read from its /status."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    r = sub.add_parser("status", help="show each rule's state in a running dyntel (running, window, cooldown, limit)",
                       description="Ask a running `dyntel run` (its --metrics-listen endpoint) for each rule's state: "
                                   "running, cooling down until when, limit reached; how full its window is; what "
                                   "it matched and fired; and each queue's counts: in, out, dropped by reason, "
                                   "size and capacity.")
    r.add_argument("--endpoint", default="http://127.0.0.1:9464",
                   help="the running dyntel's metrics endpoint (default http://127.0.0.1:9464)")
    r.add_argument("--json", action="store_true", help="print the JSON /status returns")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    from dyntel.engine.status import RuleStatus, format_statuses

    url = args.endpoint.rstrip("/") + "/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
    except (urllib.error.URLError, OSError) as e:
        print(f"dyntel status: cannot reach {url}: {getattr(e, 'reason', e)} (is `dyntel run` running with its "
              f"metrics endpoint there? see --metrics-listen)", file=sys.stderr)
        return 1
    document = json.loads(body)
    if args.json:
        print(json.dumps(document, indent=1))
        return 0
    statuses = [RuleStatus(**r) for r in document.get("rules", [])]
    sys.stdout.write(format_statuses(statuses))
    queues = document.get("queues")
    if queues:
        from dyntel.queues import format_queues

        sys.stdout.write("\n".join(format_queues(queues, indent="")) + "\n")
    return 0
