"""Token authentication for clients of a running Ray cluster, found the way Ray finds it.

Ray 2.60 clusters use token auth by default, and a client must run with
RAY_AUTH_MODE=token to send the token. `ray.init()` turns that on by itself
only for a cluster it discovers (no address given); with an explicit address,
and in the job client and `ray job submit`, it stays off, which is how a
plain `ray job submit` fails with "Authentication token is missing".
"""

from __future__ import annotations

import logging


def use_cluster_token() -> bool:
    """Turn token mode on for this process and its children when a token is at hand; True if it is on.

    Ray's own rule for discovered clusters, applied to every client: a token
    in ~/.ray/auth_token, RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH enables it,
    and a RAY_AUTH_MODE the user set is respected. Ray's function also
    refreshes its cached config, which setting the variable alone would not.
    """
    from ray._private.authentication import authentication_token_setup

    # Its warning ("enabled for this Ray cluster ... set RAY_AUTH_MODE=disabled") speaks to a cluster's owner, not a client.
    setup_logger = logging.getLogger(authentication_token_setup.__name__)
    level = setup_logger.level
    setup_logger.setLevel(logging.ERROR)
    try:
        return authentication_token_setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup_logger.setLevel(level)
