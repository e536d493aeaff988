"""Intents at deployment: each route's engine configuration from the cost table, and what per-request intents rank.

iServe's deployment controller (seeds/003 §4.2, §6) ranks a model's
configurations by the intent and deploys the first feasible one. Here a
route whose intent (its own, else the app's) is not `slo` takes from the
table what the table measured, and nothing else:

- from the table: `max_num_seqs` and the variant (`enable_prefix_caching`,
  `enable_chunked_prefill`), the knobs a sweep profiles, chosen over every
  configuration that meets the SLO for all the route's query types on every
  one of its shapes (CostTable.intent_configuration). The clock is the one a
  live replica runs that configuration at (default clocks where profiled),
  since replicas do not set clocks yet: the figures the intent ranked are
  then the ones the autoscaler sizes by.
- the operator's: `max_model_len`, `max_num_batched_tokens`, `dtype`,
  `gpu_memory_utilization`, `load_format`, `extra_engine_kwargs`, the
  resources and shapes, replica and queue bounds. The table measured none of
  them (its rows were profiled at one context length and memory share), and
  they are the operator's promises to clients (context) and to the cluster
  (resources).

A route serving no query type of its own keeps its engine settings. A table
that cannot answer a route's intent (no row, no configuration meeting the SLO
on every shape, no power measured for min-energy, settings vLLM would refuse)
stops startup with the route named. Applying the intents twice gives the same
config, so the app builder and the autoscaling policy (which parses the same
args in Serve's controller) size the same configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import ValidationError

from oasis_ray.config import EngineSettings, OasisAppConfig, RouteConfig
from oasis_ray.costs.config_choice import FixedConfiguration
from oasis_ray.costs.live import route_hardware, route_variant
from oasis_ray.costs.table import CostTable, IntentConfiguration, IntentUnanswered
from oasis_ray.intent_routing import IntentTargets, ShapeFigures, Target
from oasis_ray.intents import Intent
from oasis_ray.profiling.sweep_spec import Variant
from oasis_ray.query_types import QueryType
from oasis_ray.routing import QueryRouter
from oasis_ray.scaling.shapes import ShapeOption
from oasis_ray.validation import error_lines


class IntentError(ValueError):
    """The cost table cannot configure a route for its intent; the message names each route."""


@dataclass(frozen=True)
class RouteIntentChoice:
    """What one route's intent chose, for the log line the app builder writes."""

    route: str
    intent: Intent
    chosen: IntentConfiguration

    def log_line(self) -> str:
        c = self.chosen
        energy = f"{c.energy_per_request_j:.4g}" if math.isfinite(c.energy_per_request_j) else "unavailable"
        return (f"route={self.route} intent={self.intent.value} max_num_seqs={c.configuration.max_num_seqs} "
                f"variant={c.configuration.variant} clock_mhz={c.clock_mhz or 'default'} msrr_rps={c.msrr_rps:.4g} "
                f"p95_unloaded_s={c.p95_unloaded_s:.4g} energy_j_per_request={energy}")


def apply_intents(config: OasisAppConfig, table: CostTable) -> tuple[OasisAppConfig, list[RouteIntentChoice]]:
    """The config with each route's engine settings as its intent chooses them, and what was chosen.

    (A config without a cost table has only `slo` routes: its validation refuses any other intent.)
    """
    router = QueryRouter(config)
    routes: list[RouteConfig] = []
    choices: list[RouteIntentChoice] = []
    problems: list[str] = []
    for i, route in enumerate(config.routes):
        intent = config.route_intent(route)
        types = [qt for qt in QueryType if router.route_name(route.model, qt) == route.name]
        if intent is Intent.SLO or not types:
            routes.append(route)
            continue
        try:
            chosen = table.intent_configuration(route.model, dict.fromkeys(types, 1.0), route_hardware(route), intent)
        except IntentUnanswered as reason:
            problems.append(f"route '{route.key}' (intent {intent.value}): {reason}")
            continue
        configuration = chosen.configuration
        try:
            engine = EngineSettings.model_validate({
                **route.engine.model_dump(), "max_num_seqs": configuration.max_num_seqs,
                **Variant(configuration.variant).engine_flags(),
            })
        except ValidationError as invalid:
            problems += [f"routes[{i}].engine of route '{route.key}' at intent {intent.value}'s {configuration}: "
                         f"{line}" for line in error_lines(invalid)]
            continue
        routes.append(route.model_copy(update={"engine": engine}))
        choices.append(RouteIntentChoice(route=route.key, intent=intent, chosen=chosen))
    if problems:
        raise IntentError("the hardware cost table cannot configure these routes for their intents:\n  "
                          + "\n  ".join(problems))
    return config.model_copy(update={"routes": routes}), choices


def intent_targets(config: OasisAppConfig, table: CostTable) -> IntentTargets:
    """Every deployed (route, shape), with the table's figures per query type at the route's configuration.

    `config` is the one apply_intents returned, so the figures are those of
    the engine settings the replicas run.
    """
    by_model: dict[str, list[Target]] = {}
    for route in config.routes:
        variant = route_variant(route)
        hardware = route_hardware(route)
        figures: dict[str, dict[QueryType, ShapeFigures]] = {shape: {} for shape in hardware.shapes}
        if variant is not None:
            fixed = FixedConfiguration(max_num_seqs=route.engine.max_num_seqs, variant=variant.value)
            for query_type in QueryType:
                for choice in table.shape_choices(route.model, query_type, hardware, fixed):
                    figures[choice.option.shape][query_type] = ShapeFigures(
                        msrr_rps=choice.option.msrr_rps, gpu_fraction=choice.option.gpu_fraction,
                        p95_unloaded_s=choice.p95_unloaded_s,
                        energy_per_request_j=_charged_energy_per_request(choice.option, hardware.idle_power_w),
                    )
        by_model.setdefault(route.model, []).extend(
            Target(route=route.name, shape=shape, max_model_len=route.engine.max_model_len, figures=by_type)
            for shape, by_type in figures.items()
        )
    return IntentTargets(by_model={model: tuple(targets) for model, targets in by_model.items()})


def _charged_energy_per_request(option: ShapeOption, idle_power_w: float | None) -> float | None:
    """Joules per request at the MSRR, with a MIG slice charged as the service curves charge it.

    A whole unit's row power is its own. A slice's row power is its parent
    GPU's draw with only that slice busy (oasis_ray.costs.curves), so the slice
    is charged its share of the GPU's idle power plus the dynamic part; without
    the GPU's idle figure that split is unknown, and so is the slice's energy.
    """
    if option.power_w is None:
        return None
    if option.is_whole_unit:
        return option.power_w / option.msrr_rps
    if idle_power_w is None:
        return None
    charged = option.power_w - idle_power_w * (1.0 - option.gpu_fraction)
    return charged / option.msrr_rps if charged > 0 else None
