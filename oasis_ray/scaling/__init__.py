"""Phase 2: the pure autoscaling core (OASIS Algorithm 1 and its damping) and the capacities it reads from the HCT."""
