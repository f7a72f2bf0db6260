"""The local broker's jars: fetched once from Maven Central with ``mvn`` into the cache."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from stream_app.tools.local_broker.config import MARKER, marker_header, pom_xml
from stream_app.tools.local_broker.process import KafkaLocalError, tail_text


def jars_ready(cache_dir: Path, version: str) -> bool:
    """True if the jar folder holds a complete download of the current pom."""
    marker = cache_dir / MARKER
    try:
        lines = marker.read_text().splitlines()
    except OSError:
        return False
    if not lines or lines[0] != marker_header(version):
        return False  # missing, or fetched with a different pom
    names = [n for n in lines[1:] if n.endswith(".jar")]
    return bool(names) and all((cache_dir / n).is_file() for n in names)


def fetch_jars(cache_dir: Path, version: str) -> Path:
    """Fetch the broker's runtime jars with Maven unless already cached.

    Invariant: ``cache_dir`` only ever appears complete. Maven downloads into
    a sibling temp folder, the marker (pom hash + every jar name) is written
    there, and the folder is then renamed into place. A marker from another
    pom (e.g. an older version of this module) triggers a fresh download.
    """
    if jars_ready(cache_dir, version):
        return cache_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaLocalError(
            "Maven ('mvn') is not on PATH; it is needed once to download the Kafka "
            f"{version} jars into {cache_dir} (e.g. apt-get install maven)"
        )
    parent = cache_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tango-kafka-pom-") as work, \
            tempfile.TemporaryDirectory(prefix=".libs-", dir=parent) as staging:
        pom = Path(work) / "pom.xml"
        pom.write_text(pom_xml(version))
        out_dir = Path(staging) / "libs"
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies",
               f"-DoutputDirectory={out_dir}", "-DincludeScope=runtime"]
        try:
            proc = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise KafkaLocalError(f"mvn timed out after {exc.timeout:.0f}s fetching Kafka jars") from exc
        jars = sorted(p.name for p in out_dir.glob("*.jar")) if out_dir.is_dir() else []
        if proc.returncode != 0 or not jars:
            output = (proc.stdout or "") + (proc.stderr or "")
            raise KafkaLocalError(
                f"mvn failed (exit {proc.returncode}) fetching Kafka {version} jars:\n"
                + tail_text(output, 40)
            )
        (out_dir / MARKER).write_text(marker_header(version) + "\n" + "\n".join(jars) + "\n")
        if cache_dir.exists():  # incomplete leftover from an interrupted run
            shutil.rmtree(cache_dir, ignore_errors=True)
        try:
            out_dir.rename(cache_dir)
        except OSError:
            if not jars_ready(cache_dir, version):  # lost a race to a concurrent fetch_jars()
                raise
    return cache_dir
