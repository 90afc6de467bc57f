"""Windows: ETW real-time sessions and ETL recordings."""
