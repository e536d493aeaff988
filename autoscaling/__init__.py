"""Serve autoscaling policy: the thin adapter between Ray Serve and oasis_ray's pure scaling core."""
