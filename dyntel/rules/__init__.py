"""Rule files to compiled rules: read (YAML with positions), collect (files, shared lists and macros), compile
(conditions to Python functions), index (rules by what they can match). `loader.load_rules` is the entry point;
`model` holds what the engine receives."""
