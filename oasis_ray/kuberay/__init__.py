"""A KubeRay RayService manifest for an oasis app: typed parts of the schema (manifest) and the rendering (render)."""
