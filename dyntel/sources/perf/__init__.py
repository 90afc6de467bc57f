"""Linux: perf rings live, perf.data recordings, tracefs formats and user_events."""
