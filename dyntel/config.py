"""One YAML config for the sidecar, validated like rule files, overridden by environment variables and flags.

Precedence, lowest first: built-in defaults < the config file (`--config FILE`, or $DYNTEL_CONFIG) < environment
variables (`DYNTEL_` + the key in capitals with dots as underscores: `DYNTEL_ARTIFACTS_QUOTA=1GB`) < command-line
flags. `dyntel config show` prints the merged result and where each value came from.

```yaml
rules: [/etc/dyntel/rules]          # rule files or folders (flags: --rules)
sources:
  events: ["sched:sched_process_exec"]  # extra tracepoints
  register: [MyService_L4K1]         # user_events to pre-register
  callchain: false
  latency: low                       # low: act within milliseconds; throughput: batch (docs/rules.md, "Latency")
  max_wait: 2ms                      # longest a batched event waits in its ring (default 2ms low, 100ms throughput)
artifacts:
  dir: /var/lib/dyntel/artifacts
  quota: 2GB
  keep: 50
  min_free: 256MB
actions:
  log: /var/lib/dyntel/artifacts/actions.jsonl
  workers: 2
  queue: 64
  allow: [log, dump, stacks, enable, otlp, record, signal]   # exec only when listed here or --allow-exec
  limits: {dump: 3/1h, stacks: "concurrent:1"}
  otlp: {endpoint: "http://collector:4318", protocol: http/protobuf}   # defaults for otlp actions
metrics:
  listen: 127.0.0.1:9464
  otlp: {endpoint: "http://collector:4318", interval: 30s}   # dyntel's own metrics as OTLP, pushed
forward: {...}                       # OTLP forwarding of events (docs/otlp.md)
security:
  redact: ["*PASSWORD*", "*TOKEN*"]  # environment and argument names redacted in dumps and alerts
log:
  level: info                        # dyntel's own log on stderr: debug, info, warning, error (--log-level)
```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from dyntel.logs import check_level
from dyntel.options import AnyDict, Duration, Keys, OptionsModel, Size, Texts
from dyntel.rules.errors import RuleError, RuleErrors
from dyntel.rules.model import Position
from dyntel.rules.schema_errors import validate_model
from dyntel.rules.yaml_read import read_yaml
from dyntel.units import parse_duration, parse_size

# --- the file's schema ------------------------------------------------------------------------------------------------


class SourcesModel(OptionsModel):
    what: ClassVar[str] = "sources"
    events: Texts = Field(default_factory=list)
    register_: Texts = Field(default_factory=list, alias="register")  # `register` is a pydantic attribute
    callchain: bool | None = None
    latency: Literal["low", "throughput"] | None = None
    max_wait: Duration | None = None


class ArtifactsModel(OptionsModel):
    what: ClassVar[str] = "artifacts"
    dir: str | None = None
    quota: Size | None = None
    keep: int | None = Field(default=None, ge=1)
    min_free: Size | None = None


class OtlpDefaultsModel(OptionsModel):
    what: ClassVar[str] = "actions.otlp"
    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] | None = None


class ActionsModel(OptionsModel):
    what: ClassVar[str] = "actions"
    log: str | None = None
    workers: int | None = Field(default=None, ge=1)
    queue: int | None = Field(default=None, ge=1)
    allow: Keys | None = None
    limits: dict[str, str] | None = None
    otlp: OtlpDefaultsModel | None = None


class OtlpMetricsModel(OptionsModel):
    what: ClassVar[str] = "metrics.otlp"
    endpoint: str | None = None
    interval: Duration | None = None


class MetricsModel(OptionsModel):
    what: ClassVar[str] = "metrics"
    listen: str | None = None
    otlp: OtlpMetricsModel | None = None


class SecurityModel(OptionsModel):
    what: ClassVar[str] = "security"
    redact: Texts | None = None


class LogModel(OptionsModel):
    what: ClassVar[str] = "log"
    level: Literal["debug", "info", "warning", "error"] | None = None


class ConfigModel(OptionsModel):
    what: ClassVar[str] = "the top level of a config file"
    rules: Keys | None = None
    sources: SourcesModel | None = None
    artifacts: ArtifactsModel | None = None
    actions: ActionsModel | None = None
    metrics: MetricsModel | None = None
    forward: AnyDict | None = None
    security: SecurityModel | None = None
    log: LogModel | None = None


# --- the merged settings ----------------------------------------------------------------------------------------------

def _text_list(v: str) -> list[str]:
    return [x.strip() for x in v.split(",") if x.strip()]


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{v!r} is not true or false")


def _latency(v: str) -> str:
    if v not in ("low", "throughput"):
        raise ValueError(f"{v!r}: expected low or throughput")
    return v


def _limits(v: str) -> dict[str, str]:
    out = {}
    for item in _text_list(v):
        kind, sep, spec = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r}: write TYPE=LIMIT, e.g. dump=3/1h")
        out[kind] = spec
    return out


def _file_only(v: str) -> Any:
    raise ValueError("this section is set in the config file only")


@dataclass(frozen=True, slots=True)
class Key:
    default: Any
    from_env: Callable[[str], Any]  # how an environment variable's text becomes a value


DEFAULT_ALLOW = ["log", "dump", "stacks", "enable", "otlp", "record", "signal"]

KEYS: dict[str, Key] = {
    "rules": Key([], _text_list),
    "sources.events": Key([], _text_list),
    "sources.register": Key([], _text_list),
    "sources.callchain": Key(False, _bool),
    "sources.latency": Key("low", _latency),
    "sources.max_wait": Key(None, parse_duration),  # nanoseconds; None: the latency mode's own
    "artifacts.dir": Key("dyntel-artifacts", str),
    "artifacts.quota": Key(2 << 30, parse_size),
    "artifacts.keep": Key(50, int),
    "artifacts.min_free": Key(256 << 20, parse_size),
    "actions.log": Key(None, str),
    "actions.workers": Key(2, int),
    "actions.queue": Key(64, int),
    "actions.allow": Key(DEFAULT_ALLOW, _text_list),
    "actions.limits": Key({}, _limits),
    "actions.otlp.endpoint": Key(None, str),
    "actions.otlp.protocol": Key(None, str),
    "metrics.listen": Key(None, str),
    "metrics.otlp.endpoint": Key(None, str),
    "metrics.otlp.interval": Key(30 * 10**9, parse_duration),
    "forward": Key(None, _file_only),
    "security.redact": Key([], _text_list),
    "log.level": Key("info", check_level),
}


# Older or shorter names, still read (the canonical name wins when both are set).
ENV_ALIASES = {"DYNTEL_ARTIFACTS": "artifacts.dir"}


def env_name(key: str) -> str:
    return "DYNTEL_" + key.upper().replace(".", "_")


@dataclass(slots=True)
class Settings:
    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # key -> "default" | "FILE:LINE:COL" | "$VAR" | "--flag"
    config_file: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def _flatten(model: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{info.alias or name}"
        if value is None:
            continue
        if isinstance(value, OptionsModel):
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def load_config_file(path: str) -> tuple[dict[str, Any], dict[str, Position]]:
    """The file's values by key, and where each was written. Raises RuleErrors (file:line:column) when wrong."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise RuleErrors([RuleError(Position(path, 1, 1), f"cannot read the config file: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line, column = before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1
        raise RuleErrors([RuleError(Position(path, line, column),
                                    f"not UTF-8 text: {e.reason} at byte {e.start}")]) from None
    doc, errors = read_yaml(path, text)
    if doc is None:
        raise RuleErrors(errors)
    value = doc.value if doc.value is not None else {}
    model, more = validate_model(ConfigModel, value, doc, (), ConfigModel.what)
    errors += more
    if errors:
        raise RuleErrors(errors)
    flat = _flatten(model)
    where = {key: doc.at(tuple(key.split("."))) for key in flat}
    return flat, where


def resolve(config_file: str | None = None, env: Mapping[str, str] | None = None,
            flags: Mapping[str, Any] | None = None) -> Settings:
    """Defaults < config file < environment < flags. `flags` holds only the flags actually given (by key)."""
    env = os.environ if env is None else env
    config_file = config_file or env.get("DYNTEL_CONFIG") or None
    settings = Settings(config_file=config_file)
    for key, spec in KEYS.items():
        settings.values[key] = spec.default
        settings.origin[key] = "default"
    if config_file:
        values, where = load_config_file(config_file)
        for key, value in values.items():
            settings.values[key] = value
            settings.origin[key] = str(where[key])
    problems = []
    aliases = {key: alias for alias, key in ENV_ALIASES.items() if alias in env}
    for key, spec in KEYS.items():
        name = env_name(key)
        if name not in env and key in aliases:
            name = aliases[key]
        if name in env:
            try:
                settings.values[key] = spec.from_env(env[name])
            except ValueError as e:
                problems.append(f"${name}: {e}")
                continue
            settings.origin[key] = f"${name}"
    if problems:
        raise RuleErrors([RuleError(Position("<environment>", 1, 1), p) for p in problems])
    for key, value in (flags or {}).items():
        if value is not None:
            settings.values[key] = value
            settings.origin[key] = "flag"
    return settings


def show(settings: Settings) -> str:
    """The merged settings as YAML, each value with where it came from."""
    import yaml

    lines = [f"# merged from: defaults, {settings.config_file or 'no config file'}, DYNTEL_* variables, flags"]
    for key in KEYS:
        value = settings.values[key]
        text = yaml.safe_dump({key: value}, default_flow_style=True, width=1_000_000).strip()
        text = text.removeprefix("{").removesuffix("}")
        lines.append(f"{text}    # {settings.origin[key]}")
    return "\n".join(lines) + "\n"
