"""Development tooling: stand-ins for the outside world, used by tests and the demo."""
