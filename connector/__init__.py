"""The virtual-visits connector for Oracle Health (Cerner): the deployed Python package."""

__version__ = "0.1.0"
