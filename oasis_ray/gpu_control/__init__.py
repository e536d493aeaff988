"""GPU settings at serving time: which GPU a replica runs on, setting its clock and power limit, leases that restore them."""
