"""OASIS query types: small/large input x small/large output.

A request is *small* on a side when its token count is at most tau, *large*
above it, so with tau = 500 a 500-token prompt is small and a 501-token prompt
is large. The output side is judged on the output budget (max_tokens), because
that is what is known at admission time and what bounds the decode cost.
"""

from __future__ import annotations

from enum import Enum

DEFAULT_TAU_TOKENS = 500


class QueryType(str, Enum):
    SISO = "SISO"
    SILO = "SILO"
    LISO = "LISO"
    LILO = "LILO"


def classify(input_tokens: int, output_tokens: int, tau: int = DEFAULT_TAU_TOKENS) -> QueryType:
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError(f"token counts must be non-negative, got input={input_tokens} output={output_tokens}")
    large_in = input_tokens > tau
    large_out = output_tokens > tau
    return QueryType(("LI" if large_in else "SI") + ("LO" if large_out else "SO"))
