"""Corpus-level runs beyond ``nlp.pipe``: ``annotate`` (sharded, resumable, exactly
once; local or on Ray) and the Ray encoding path of ``build-kb``. See docs/scale.md."""
from .annotate import annotate
from .inputs import read_inputs
from .ray_engine import gpu_for_actor, require_ray

__all__ = ["annotate", "read_inputs", "gpu_for_actor", "require_ray"]
