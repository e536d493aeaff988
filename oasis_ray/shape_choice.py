"""Spreading a route's requests over its shapes (full GPU, MIG slices) in proportion to their capacity.

While the autoscaler moves a route from one shape to another, both shapes run
for a while (make before break); requests go to whichever replicas exist, in
proportion to running replicas times the shape's share of a GPU, by smooth
weighted round robin so the split is even at every scale, not only on average.
"""

from __future__ import annotations

from oasis_ray.scaling.shapes import default_gpu_fraction


class ShapeBalancer:
    def __init__(self, cold_start_shapes: dict[str, str]):
        """`cold_start_shapes`: per route, where requests go while no replica runs (a cold start)."""
        self._cold_start = cold_start_shapes
        self._credit: dict[str, dict[str, float]] = {}

    def pick(self, route: str, running: dict[str, int]) -> str:
        weights = {shape: count * (default_gpu_fraction(shape) or 1.0) for shape, count in running.items() if count > 0}
        if not weights:
            return self._cold_start[route]
        credit = self._credit.setdefault(route, {})
        for shape in list(credit):
            if shape not in weights:
                del credit[shape]
        total = sum(weights.values())
        for shape, weight in weights.items():
            credit[shape] = credit.get(shape, 0.0) + weight
        chosen = max(credit, key=credit.__getitem__)
        credit[chosen] -= total
        return chosen
