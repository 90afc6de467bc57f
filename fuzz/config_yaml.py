"""The config file (`dyntel run --config`, DYNTEL_CONFIG). Documented outcome: the settings, or RuleErrors each
naming a line and column inside the file; never another exception, never a hang.

    python -m fuzz.config_yaml [libFuzzer flags] [corpus dirs]     fuzz
    python -m fuzz.config_yaml --run FILE...                          run inputs once
"""

from __future__ import annotations

from fuzz.common import entry
from fuzz.rules_yaml import check_positions, scratch

MODULES = ["dyntel.config", "dyntel.rules.schema_errors", "dyntel.rules.yaml_read"]


def run(data: bytes) -> None:
    from dyntel.config import resolve, show
    from dyntel.rules.errors import RuleErrors

    path = scratch(data, ".config.yaml")
    try:
        settings = resolve(path, env={})
    except RuleErrors as e:
        check_positions(e.errors, path, data)
        return
    show(settings)


def TestOneInput(data: bytes) -> None:
    run(data)


if __name__ == "__main__":
    entry(run, MODULES)
