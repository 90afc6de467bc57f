"""`dyntel demo`: the whole idea in under a minute, with nothing but the package installed."""
