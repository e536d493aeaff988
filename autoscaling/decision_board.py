"""Where the policy's decisions become readable outside Serve's controller.

The policy runs inside the controller, whose logs few operators read and whose
metrics the app's exporters do not see. It posts each change here; the
ingress reads them back for its scaling metric and the status view, and each
whole-GPU replica reads its route's GPU setting (the clock the core chose)
when it renews its lease (deployments/gpu_settings.py). One board per app,
named after it; the controller owns it, so it lives as long as Serve.
"""

from __future__ import annotations

from collections import deque

import ray

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.scaling.record import ScalingRecord

NAMESPACE = "oasis-ray"
# Decisions kept for readers: the status view shows the last few, the metric counts every one.
HISTORY = 200


def board_name(app_name: str) -> str:
    return f"oasis-scaling-board:{app_name}"


@ray.remote(num_cpus=0)
class DecisionBoard:
    def __init__(self) -> None:
        self._records: deque[tuple[int, ScalingRecord]] = deque(maxlen=HISTORY)
        self._sequence = 0
        self._settings: dict[str, DeviceSetting] = {}

    def post(self, records: list[ScalingRecord]) -> None:
        for record in records:
            self._sequence += 1
            self._records.append((self._sequence, record))

    def since(self, sequence: int) -> list[tuple[int, ScalingRecord]]:
        return [entry for entry in self._records if entry[0] > sequence]

    def publish_settings(self, settings: dict[str, DeviceSetting]) -> None:
        """The GPU setting each listed route's whole-GPU replicas should run at from now on."""
        self._settings.update(settings)

    def setting(self, route: str) -> DeviceSetting | None:
        """None until the policy has chosen one for the route: replicas keep their start setting."""
        return self._settings.get(route)


def open_board(app_name: str) -> ray.actor.ActorHandle:
    """The app's board, created on first use by whichever caller comes first."""
    return DecisionBoard.options(name=board_name(app_name), namespace=NAMESPACE, get_if_exists=True).remote()


def find_board(app_name: str) -> ray.actor.ActorHandle | None:
    """The app's board if its policy has posted anything yet; None without a policy."""
    try:
        return ray.get_actor(board_name(app_name), namespace=NAMESPACE)
    except ValueError:
        return None
