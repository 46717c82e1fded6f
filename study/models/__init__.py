"""Models: registries of backbones, necks, fusions and heads, and the registered variants."""

from study.models import fusions as _fusions  # noqa: F401  (registers every fusion strategy)
from study.models.detector import Detector
from study.models.outputs import LevelOutput
from study.models.zoo import VARIANTS, available, build_model, model_spec, register_variant

__all__ = [
    "Detector",
    "LevelOutput",
    "VARIANTS",
    "available",
    "build_model",
    "model_spec",
    "register_variant",
]
