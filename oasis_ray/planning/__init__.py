"""Capacity planning on traces: trace loaders, the planner, the what-if simulator and live replay."""
