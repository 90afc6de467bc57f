"""dyntel's own face as a service: the HTTP endpoint (/metrics, /healthz, /readyz, /status), its self-metrics
(Prometheus and OTLP) and the exit summary."""
