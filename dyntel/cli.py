"""The `dyntel` command line: argparse over the verb modules in `dyntel.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dyntel.errors import DyntelError

# One module a verb; each has register(subparsers) and keeps its heavy imports inside its run function, so that
# `dyntel decode` loads no rule engine.
VERBS = (
    "dyntel.commands.decode",
    "dyntel.commands.validate",
    "dyntel.commands.replay",
    "dyntel.commands.test",
    "dyntel.commands.run",
    "dyntel.commands.action",
    "dyntel.commands.status",
    "dyntel.commands.config",
    "dyntel.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    from dyntel.logs import LEVELS

    p = argparse.ArgumentParser(prog="dyntel", description="Listen to user_events and ETW, evaluate rules, act.")
    p.add_argument("--log-level", choices=LEVELS, type=str.lower, metavar="LEVEL",
                   help="dyntel's own log on stderr (rule reloads, live source warnings): "
                        f"{', '.join(LEVELS)} (default: $DYNTEL_LOG_LEVEL, the config's log.level, else info)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERBS:
        importlib.import_module(name).register(sub)
    return p


def log_level(args: argparse.Namespace) -> str:
    """--log-level, else $DYNTEL_LOG_LEVEL, else the config file's log.level (when the verb has one), else info."""
    import os

    from dyntel.logs import DEFAULT_LEVEL, check_level

    if args.log_level:
        return str(args.log_level)
    env = os.environ.get("DYNTEL_LOG_LEVEL")
    if env:
        return check_level(env)
    config = getattr(args, "config", None) or os.environ.get("DYNTEL_CONFIG")
    if config:
        from dyntel.config import load_config_file

        try:
            values, _ = load_config_file(config)
        except Exception:  # the verb reads the file again and reports what is wrong with it, where
            return DEFAULT_LEVEL
        return str(values.get("log.level", DEFAULT_LEVEL))
    return DEFAULT_LEVEL


def main(argv: Sequence[str] | None = None) -> int:
    from dyntel.privileges import raise_permitted

    # The image's interpreter holds its capabilities as permitted only (docs/deploy.md, "Capabilities").
    raise_permitted()
    args = build_parser().parse_args(argv)
    from dyntel.logs import configure

    try:
        configure(log_level(args))
    except ValueError as e:
        print(f"dyntel: {e}", file=sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        return 0
    except DyntelError as e:
        print(f"dyntel {args.verb}: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
