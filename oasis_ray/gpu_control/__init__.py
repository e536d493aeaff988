"""GPU settings at serving time: a replica's GPU, its clock and power limit, and the leases that restore them."""
