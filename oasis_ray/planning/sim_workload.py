"""The requests a simulation replays: arrival time, model and query type, as flat numpy arrays.

Public traces have no model column (the Azure 2023 traces are one service's
traffic), so the models a trace is split over are the caller's choice. The
split is round robin in arrival order: every model sees the same burst shape
and query mix at 1/n of the rate, which is what a what-if over model count
should vary, and it is reproducible without a seed.

Query types use the trace's generated tokens as the output budget, the only
output length a trace records (oasis classifies live requests by max_tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oasis_ray.costs.table import ServedLengths
from oasis_ray.query_types import DEFAULT_TAU_TOKENS, QueryType, classify
from oasis_ray.planning.traces import Trace

# Code 2 * (large input) + (large output); `classify` names each code, so the order cannot drift from it.
QUERY_TYPES: tuple[QueryType, ...] = tuple(
    classify(DEFAULT_TAU_TOKENS + large_in, DEFAULT_TAU_TOKENS + large_out)
    for large_in in (0, 1)
    for large_out in (0, 1)
)


def type_codes(input_tokens: np.ndarray, output_tokens: np.ndarray, tau: int) -> np.ndarray:
    """Index into QUERY_TYPES per request, vectorised (classify per row would loop over millions)."""
    if tau <= 0:
        raise ValueError(f"tau: must be positive, got {tau}")
    return (input_tokens > tau).astype(np.int8) * 2 + (output_tokens > tau).astype(np.int8)


@dataclass(frozen=True, eq=False)
class Workload:
    """Requests sorted by arrival; `model_index` indexes `models`, `type_code` indexes QUERY_TYPES."""

    name: str
    models: tuple[str, ...]
    arrival_s: np.ndarray
    model_index: np.ndarray
    type_code: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __post_init__(self) -> None:
        arrays = (self.arrival_s, self.model_index, self.type_code, self.input_tokens, self.output_tokens)
        sizes = {len(array) for array in arrays}
        if len(sizes) != 1:
            raise ValueError(f"arrival_s: arrays of one workload differ in length ({sorted(sizes)})")
        if len(self.arrival_s) == 0:
            raise ValueError("arrival_s: a workload needs at least one request")
        if np.any(np.diff(self.arrival_s) < 0):
            raise ValueError("arrival_s: requests must be sorted by arrival")
        if not self.models:
            raise ValueError("models: at least one model is needed")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1])

    @classmethod
    def from_tokens(
        cls,
        name: str,
        arrival_s: np.ndarray,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
        models: tuple[str, ...],
        tau: int = DEFAULT_TAU_TOKENS,
    ) -> Workload:
        count = len(arrival_s)
        inputs, outputs = np.asarray(input_tokens, dtype=np.int64), np.asarray(output_tokens, dtype=np.int64)
        return cls(
            name=name,
            models=models,
            arrival_s=np.asarray(arrival_s, dtype=np.float64),
            model_index=np.arange(count, dtype=np.int64) % max(1, len(models)),
            type_code=type_codes(inputs, outputs, tau),
            input_tokens=inputs,
            output_tokens=outputs,
        )

    @classmethod
    def from_trace(cls, trace: Trace, models: tuple[str, ...], tau: int = DEFAULT_TAU_TOKENS) -> Workload:
        requests = trace.requests
        return cls.from_tokens(
            trace.name,
            requests["arrival_s"].to_numpy(dtype=np.float64),
            requests["input_tokens"].to_numpy(),
            requests["output_tokens"].to_numpy(),
            models,
            tau,
        )

    def served_lengths(self, requests: np.ndarray) -> ServedLengths:
        """The mean input and output tokens per query type of `requests` (indices or a mask)."""
        codes = self.type_code[requests]
        inputs, outputs = self.input_tokens[requests], self.output_tokens[requests]
        return ServedLengths(by_type={
            query_type: (float(inputs[codes == code].mean()), float(outputs[codes == code].mean()))
            for code, query_type in enumerate(QUERY_TYPES) if (codes == code).any()
        })

    def routes_present(self) -> list[tuple[int, int]]:
        """(model index, type code) pairs with at least one request, in a stable order."""
        pairs = np.unique(self.model_index * len(QUERY_TYPES) + self.type_code)
        return [(int(pair) // len(QUERY_TYPES), int(pair) % len(QUERY_TYPES)) for pair in pairs]
