"""Ray job entry points for profiling sweeps that produce the hardware cost table."""
