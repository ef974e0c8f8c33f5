"""The `chainpulse` console script.

`serve` runs on eventlet, whose monkey patching must happen before click, web3, ssl or
redis are imported; so this entry module patches first and imports the commands after.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    # Only the Celery worker's pool shares metric files (`workers.metrics`); a directory
    # set for it in a shared environment must not turn this process's registry into them.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if args[:1] == ["serve"]:
        import warnings

        # eventlet warns on import that it is deprecated (EventletDeprecationWarning, a plain
        # Warning subclass); chainpulse chooses it deliberately (docs/architecture.md).
        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        import eventlet

        eventlet.monkey_patch()
    from chainpulse.commands import cli

    cli.main(args=args, prog_name="chainpulse")


if __name__ == "__main__":
    main()
