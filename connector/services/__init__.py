"""Use cases. Each takes the adapters it needs as arguments (ports are ``typing.Protocol``s)."""
