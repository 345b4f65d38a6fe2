"""Pure models and rules: no I/O, no SDK imports, nothing of ours but the domain itself."""
