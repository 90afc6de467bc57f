"""The action runtime: firings off the event path to a fixed pool of workers, under per-type limits,
each outcome in the action log."""
