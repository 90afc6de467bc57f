"""Coverage-guided fuzzing of every dyntel entry point that reads untrusted bytes (atheris; see fuzz/README.md).

One module per target, each with `run(data)` (plain Python: returns for any input dyntel handles as documented,
raises `Finding` or lets an undocumented exception out otherwise) and `main()` (the atheris entry:
`python -m fuzz.TARGET [libFuzzer flags] [corpus dirs]`). `python -m fuzz.run` runs them all for a while and
prints executions, coverage and findings.
"""
