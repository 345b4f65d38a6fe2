"""The only code that talks to the outside world. Each adapter implements a port the services name."""
