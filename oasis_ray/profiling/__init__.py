"""Phase 1: profiling sweeps, the MSRR search and the hardware cost table (HCT) they produce."""
