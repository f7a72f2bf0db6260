"""What ``tango train`` runs: the resumable pipeline (``pipeline``, ``checkpoints``), teacher
fine-tuning, data loading, augmentation, distillation, calibration, reports, evaluation and
the micro-benchmark. Imports ``models`` only.
"""
