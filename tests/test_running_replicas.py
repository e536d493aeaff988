"""The ingress's narrow read of Serve's controller details (deployments/running_replicas.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ray.serve.schema import ReplicaState

from deployments.running_replicas import ControllerView

# The shape of ServeControllerClient.get_serve_details(): JSON-ready, with many fields the view does not read.
DETAILS = {
    "controller_info": {"node_id": "n1", "actor_id": "c1"},
    "proxy_location": "HeadOnly",
    "applications": {
        "oasis": {
            "name": "oasis", "route_prefix": "/", "status": "RUNNING", "deployed_app_config": {"import_path": "x:y"},
            "deployments": {
                "route:short-output@cpu:m": {
                    "name": "route:short-output@cpu:m", "status": "HEALTHY",
                    "deployment_config": {"max_ongoing_requests": 64},
                    "replicas": [
                        {"replica_id": "r1", "state": "RUNNING", "actor_id": "a1", "pid": 10, "node_id": "n1"},
                        {"replica_id": "r2", "state": "STARTING", "actor_id": None},
                    ],
                },
                "route:long-output@cpu:m": {"name": "route:long-output@cpu:m", "status": "UPDATING"},
            },
        },
    },
}


def test_the_view_keeps_each_replicas_state_and_actor_and_ignores_the_rest() -> None:
    view = ControllerView.model_validate(DETAILS)
    short = view.applications["oasis"].deployments["route:short-output@cpu:m"].replicas
    assert [(r.state, r.actor_id) for r in short] == [(ReplicaState.RUNNING, "a1"), (ReplicaState.STARTING, None)]
    assert view.applications["oasis"].deployments["route:long-output@cpu:m"].replicas == []


def test_a_state_serve_does_not_define_is_refused_naming_the_field() -> None:
    broken = {"applications": {"oasis": {"deployments": {"d": {"replicas": [{"state": "NAPPING"}]}}}}}
    with pytest.raises(ValidationError, match=r"applications\.oasis\.deployments\.d\.replicas\.0\.state"):
        ControllerView.model_validate(broken)
