"""What the system measures: NVML readings, energy accounting, OpenTelemetry metrics and spans, status."""
