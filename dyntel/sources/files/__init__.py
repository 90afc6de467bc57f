"""Recordings other tools write as files of their own kind: JSON lines, EventHeader interceptor .dat files."""
