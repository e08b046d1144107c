"""Observing the gateway for operators: Prometheus metrics and OpenTelemetry traces."""
