"""The Ray Serve application-level autoscaling policy: a thin adapter over oasis_ray's scaling core.

Set it in serve_config.yaml next to the app, with the app's own args (a YAML
anchor keeps them one source):

    autoscaling_policy:
      policy_function: autoscaling.policy:OasisAutoscalingPolicy
      policy_kwargs: {app_args: *oasis_args}

Serve calls the policy about every 0.1 s with a context per deployment that
has an autoscaling_config. The request rates per route and query type come
from the ingress's custom metrics (record_autoscaling_stats), decoded as a
TrafficReport (oasis_ray.scaling.traffic), which also turns them into the
core's input as the simulator does: a route's MSRR at the mix of types it
reports. The running replicas per shape come from the shape deployments'
contexts. The core decides; this adapter only reads contexts, logs each
change as one line and returns replica counts.
Serve then applies each deployment's bounds and up/down delays, which the app
builder sets to 0 so the core's own cooldowns and hysteresis are the only
damping.

The core's state rides in Serve's policy_state; Serve drops it on redeploy, and
the core is built to start from none (it takes the running replicas as the plan).

Each change is also posted to the app's decision board (autoscaling/decision_board.py),
from which the ingress exports it as the oasis.scaling.decisions metric and
shows it in the status view. Where a route's full-GPU shape offers GPU-setting
levels (clock_control apply), the GPU setting the core chose is published on
the board too whenever it changes; the route's whole-GPU replicas read it when
they renew their lease, and their node's keeper applies it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ray.serve._private.common import DeploymentID
from ray.serve.config import AutoscalingContext

from autoscaling.decision_board import open_board
from oasis_ray.config import INGRESS_DEPLOYMENT, parse_config
from oasis_ray.costs.source import CapacitySource
from oasis_ray.device_setting import DeviceSetting
from oasis_ray.scaling.record import ScalingRecord
from oasis_ray.scaling.state import ScalingState
from oasis_ray.scaling.traffic import TrafficReport, decide_on_report

logger = logging.getLogger("ray.serve")

STATE_KEY = "oasis_scaling_state"


class OasisAutoscalingPolicy:
    def __init__(self, app_args: dict[str, Any]):
        config = parse_config(app_args)
        self._scaling = config.scaling_config()
        self._capacities = CapacitySource(config)
        self._shape_of = {
            route.deployment_name(shape): (route.key, shape) for route in config.routes for shape in route.shapes()
        }
        self._board: Any = None
        self._published: dict[str, DeviceSetting] = {}

    def __call__(
        self, contexts: dict[DeploymentID, AutoscalingContext]
    ) -> tuple[dict[DeploymentID, int], dict[DeploymentID, dict[str, Any]]]:
        ingress_id = next((d for d in contexts if d.name == INGRESS_DEPLOYMENT), None)
        ingress = contexts.get(ingress_id) if ingress_id else None
        current: dict[str, dict[str, int]] = {}
        for deployment_id, context in contexts.items():
            if deployment_id.name in self._shape_of:
                key, shape = self._shape_of[deployment_id.name]
                current.setdefault(key, {})[shape] = len(context.running_replicas)
        report = TrafficReport.from_metrics((ingress.aggregated_metrics or {}) if ingress else {})
        stored = ScalingState.model_validate(ingress.policy_state.get(STATE_KEY) or {}) if ingress else ScalingState()
        decision, state = decide_on_report(report, self._capacities.capacities(), now_s=time.time(),
                                           current_replicas=current, config=self._scaling, state=stored)
        if decision is None:
            return {}, _policy_state(ingress_id, state)
        changes = decision.changes()
        for record in changes:
            logger.info("oasis scaling %s", record.log_line())
        app_name = ingress_id.app_name if ingress_id else next(iter(contexts)).app_name
        if changes:
            self._post(app_name, changes)
        settings = decision.settings()
        if settings and settings != {route: self._published.get(route) for route in settings}:
            self._publish_settings(app_name, settings)
        targets = decision.targets()
        replicas = {
            deployment_id: targets[key][shape]
            for deployment_id in contexts
            if deployment_id.name in self._shape_of
            for key, shape in [self._shape_of[deployment_id.name]]
            if key in targets
        }
        return replicas, _policy_state(ingress_id, state)

    def _post(self, app_name: str, changes: list[ScalingRecord]) -> None:
        """Fire and forget: a board that cannot be reached must never hold up or break scaling."""
        try:
            if self._board is None:
                self._board = open_board(app_name)
            self._board.post.remote(changes)
        except Exception:
            self._board = None
            logger.warning("oasis scaling: could not post decisions to the board", exc_info=True)

    def _publish_settings(self, app_name: str, settings: dict[str, DeviceSetting]) -> None:
        """Fire and forget like _post; remembered only once sent, so a failed send is retried next tick."""
        try:
            if self._board is None:
                self._board = open_board(app_name)
            self._board.publish_settings.remote(settings)
        except Exception:
            self._board = None
            logger.warning("oasis scaling: could not publish GPU settings to the board", exc_info=True)
            return
        self._published.update(settings)


def _policy_state(ingress_id: DeploymentID | None, state: ScalingState) -> dict[DeploymentID, dict[str, Any]]:
    """The core's state rides on the ingress's policy_state (Serve keeps one dict per deployment)."""
    return {ingress_id: {STATE_KEY: state.model_dump(mode="json")}} if ingress_id else {}
