"""Calling oasis-ray from another Ray Serve application, without HTTP.

Deploy next to a running oasis app (named "oasis" in serve_config.yaml):

    serve run examples.handle_client:app --name report-writer --route-prefix /report

The typed request and response live in `oasis_ray.api`; a refused request
raises OasisRequestError with the HTTP status it would have had.
"""

from __future__ import annotations

from ray import serve

from oasis_ray.api import GenerateRequest, GenerateResponse, OasisRequestError


@serve.deployment(ray_actor_options={"num_cpus": 0})
class ReportWriter:
    def __init__(self, oasis_app: str = "oasis"):
        self._oasis = serve.get_app_handle(oasis_app)

    async def write(self, topic: str, max_tokens: int = 32) -> GenerateResponse:
        request = GenerateRequest(messages=[{"role": "user", "content": f"Write about {topic}."}], max_tokens=max_tokens)
        return await self._oasis.generate.remote(request)

    async def refused_status(self, max_tokens: int) -> int | None:
        """The status of a request oasis refuses, showing how callers see admission errors."""
        try:
            await self._oasis.generate.remote(GenerateRequest(prompt="x", max_tokens=max_tokens))
        except OasisRequestError as error:
            return error.status_code
        return None


app = ReportWriter.bind()
