"""dyntel: listen to kernel-backed telemetry, evaluate rules, act."""

__version__ = "0.1.0"
