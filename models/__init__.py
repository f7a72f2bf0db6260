"""Models of the cascade: no Kafka in here, and no import of ``stream_app`` or ``workers``.

What workers load (``bundle``, ``student*``, ``teacher``) and the cascade's rule
(``cascade``) live at the top; what ``tango train`` runs lives in ``models.training``.
Names are imported lazily, so ``models.cascade`` stays free of torch.
"""

from importlib import import_module

_EXPORTS = {
    "Bundle": "models.bundle", "BundleError": "models.bundle", "Manifest": "models.bundle", "load_bundle": "models.bundle",
    "StudentClassifier": "models.student", "TeacherClassifier": "models.teacher",
    "calibrated_probs": "models.cascade", "cascade_predictions": "models.cascade", "route": "models.cascade",
    "to_teacher": "models.cascade", "make_tiny_bundle": "models.testing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
