"""Blueprints: the only modules that import ``azure.functions``.

Each trigger parses its input, calls one use case and maps the result or error.
"""
