"""The ingress's narrow read of Serve's controller details (deployments/running_replicas.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ray.serve.schema import (
    ApplicationDetails,
    DeploymentDetails,
    DeploymentSchema,
    ReplicaDetails,
    ReplicaState,
    ServeInstanceDetails,
)

from deployments.running_replicas import ControllerView


def _details() -> dict:
    """Serve's own details object, serialised as the controller serialises it for get_serve_details()."""
    replicas = [
        ReplicaDetails(replica_id="r1", state=ReplicaState.RUNNING, start_time_s=1.0, actor_id="a1", pid=10,
                       node_id="n1"),
        ReplicaDetails(replica_id="r2", state=ReplicaState.STARTING, start_time_s=2.0),
    ]
    deployment = DeploymentDetails(
        name="route:short-output@cpu:m", status="HEALTHY", status_trigger="CONFIG_UPDATE_COMPLETED", message="",
        deployment_config=DeploymentSchema(name="route:short-output@cpu:m"), target_num_replicas=2,
        required_resources={"CPU": 0.45}, replicas=replicas,
    )
    app = ApplicationDetails(
        name="oasis", route_prefix="/", docs_path=None, status="RUNNING", message="", last_deployed_time_s=1.0,
        source="declarative", deployments={deployment.name: deployment}, external_scaler_enabled=False,
    )
    details = ServeInstanceDetails(proxies={}, applications={"oasis": app})
    return details._get_user_facing_json_serializable_dict(exclude_unset=True)


def test_the_view_keeps_each_replicas_state_and_actor_and_ignores_the_rest() -> None:
    view = ControllerView.model_validate(_details())
    replicas = view.applications["oasis"].deployments["route:short-output@cpu:m"].replicas
    assert [(r.state, r.actor_id) for r in replicas] == [(ReplicaState.RUNNING, "a1"), (ReplicaState.STARTING, None)]


def test_a_state_serve_does_not_define_is_refused_naming_the_field() -> None:
    broken = {"applications": {"oasis": {"deployments": {"d": {"replicas": [{"state": "NAPPING"}]}}}}}
    with pytest.raises(ValidationError, match=r"applications\.oasis\.deployments\.d\.replicas\.0\.state"):
        ControllerView.model_validate(broken)
