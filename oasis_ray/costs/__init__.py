"""The one reader of the hardware cost table: capacities, power, latency and the SLO, for every caller.

`CostTable` (table.py) answers, under one SLO: which shapes of some hardware
serve a model's query types, with which configuration (config_choice.py), at
what MSRR; a route's capacity at a mix of types; and each shape's service
curve (curves.py), the latency and power at any rate. The live app asks
through intent_config.py (each route's configuration for its intent, and the
figures per-request intents rank), live.py (a configured route's shapes and
engine settings) and source.py (the table file, reloaded when it changes);
the planner and the simulator ask CostTable directly. The table's file format stays in
oasis_ray.profiling.hct, its one loader.
"""
