"""Here, before the GPU run: fill the carry folders (.carry/gpu1, .carry/gpu2; git-ignored) and check what each
call would send against the 64 MiB limit.

gpu1: wheels/ (janusweb built from HEAD), site.tar.xz (the pinned pure-Python wheels unpacked, as pip --target would
lay them out) and Chromium part 1 (pack.sh's chr.part.aa).
gpu2: Chromium part 2 (chr.part.ab, gl/*.deb), env.sh (../shared/gpu-browser) and page.tar.xz (the prebuilt page:
the host has no node).

Both archives are xz with a 64 MiB dictionary: a wheel's zip and gzip compress each file (or 32 KiB) alone, while
the page holds two builds of onnxruntime's WebAssembly (the page's and transformers.js's, 26 MB each) that a large
dictionary stores nearly once. Measured on this page and transformers 5.23.0: 14.4 -> 5.8 MB and 13.3 -> 5.5 MB,
in a few seconds each (preset 1; preset 6 saves 1-2 MB more and takes 30 s)."""

import lzma
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from janusweb.bench.gpu.plan import (CARRY1, CARRY2, CHROMIUM_PART1_BYTES, LIMITS, MIB, PAGE_ARCHIVE,
                                     SITE_ARCHIVE, WHEELS, calls)
from janusweb.errors import UserError
from janusweb.log import step
from janusweb.site import build_page

PART2_BYTES = 37_070_000  # pack.sh's part2 as measured here: chr.part.ab 36,691,032 B + gl/*.deb 372 kB


def checkout_files(repo: Path) -> list:
    """What travels with every call: tracked files and untracked files git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         capture_output=True, check=True).stdout.decode()
    return [repo / p for p in out.split("\0") if p and (repo / p).is_file()]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if Path(path).exists() else 0


def janusweb_wheel(repo: Path, dest: Path) -> Path:
    """A wheel of the committed tree (HEAD) (pip fetches setuptools to build it)."""
    with tempfile.TemporaryDirectory(prefix="janusweb-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=repo, capture_output=True, check=True).stdout
        subprocess.run(["tar", "xf", "-"], cwd=src, input=archive, check=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                        str(dest), str(src)], check=True, capture_output=True)
    return next(dest.glob("janusweb-*.whl"))


def pip_download(names: tuple, dest: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "-d", str(dest), *names], check=True)


# parts of the bench page the GPU host's rows never load (llama.cpp's WASM peer runs on the CPU): left out so
# that call 2 stays under the 64 MiB a call may send
NOT_ON_THE_GPU_HOST = ("wllama/", "wllama-bench.")


XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 1, "dict_size": 64 << 20}]


def xz_archive(folder: Path, dest: Path, keep=lambda rel: True) -> Path:
    """A .tar.xz of folder's files (sorted, paths relative to folder) for which keep(relative posix path) holds;
    tarfile on the host reads it (tarfile.open detects xz)."""
    with lzma.open(dest, "wb", format=lzma.FORMAT_XZ, filters=XZ_FILTERS) as xz, \
            tarfile.open(fileobj=xz, mode="w") as tar:
        for f in sorted(Path(folder).rglob("*")):
            rel = f.relative_to(folder).as_posix()
            if f.is_file() and keep(rel):
                tar.add(f, arcname=rel)
    return dest


def page_archive(page: Path | None, dest: Path) -> Path:
    """page.tar.xz of the built page (web/build.mjs --bench output, source maps and NOT_ON_THE_GPU_HOST left
    out)."""
    with tempfile.TemporaryDirectory(prefix="janusweb-page-") as tmp:
        if page is None:
            page = Path(tmp) / "page"
            build_page(page, bench=True)  # the bench's pages (bench.html, tjs-bench.html...) too
        return xz_archive(page, dest, lambda rel: not rel.endswith(".map") and not rel.startswith(NOT_ON_THE_GPU_HOST))


def site_archive(wheels: list, dest: Path) -> Path:
    """site.tar.xz: pure-Python wheels unpacked into one tree (a wheel is a zip of its site-packages files; no
    scripts or compiled parts in these), extracted on the host into the site folder the janusweb wheel goes to."""
    with tempfile.TemporaryDirectory(prefix="janusweb-site-") as tmp:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                z.extractall(tmp)
        return xz_archive(Path(tmp), dest)


def stage(repo: Path, kit: Path, pack: Path | None, page: Path | None, wheels: Path | None) -> dict:
    """Fill both carry folders; returns their byte sizes. pack: pack.sh's output (part1/, part2/); without it
    (the rehearsal here) the Chromium parts are left out and counted at their measured size instead."""
    c1, c2 = repo / CARRY1, repo / CARRY2
    for c in (c1, c2):
        shutil.rmtree(c, ignore_errors=True)
        (c / ("wheels" if c == c1 else "gl")).mkdir(parents=True)
    with step("stage: janusweb wheel (HEAD) and the pinned wheels"):
        janusweb_wheel(repo, c1 / "wheels")
        with tempfile.TemporaryDirectory(prefix="janusweb-pinned-") as tmp:
            if not wheels:
                pip_download(WHEELS, Path(tmp))
            pinned = []
            for name in WHEELS:
                found = list(Path(wheels or tmp).glob(name.split("==")[0].replace("-", "_") + "-"
                                                      + name.split("==")[1] + "-*.whl"))
                if not found:
                    raise UserError(f"no {name} wheel in {wheels or tmp}")
                pinned.append(found[0])
            site_archive(pinned, c1 / SITE_ARCHIVE)
    with step("stage: the prebuilt page"):
        page_archive(page, c2 / PAGE_ARCHIVE)
    shutil.copy2(Path(kit) / "env.sh", c2 / "env.sh")
    if pack:
        shutil.copy2(Path(pack) / "part1" / "chr.part.aa", c1)
        for f in Path(pack, "part2").glob("chr.part.a*"):
            shutil.copy2(f, c2)
        for f in Path(pack, "part2", "gl").glob("*.deb"):
            shutil.copy2(f, c2 / "gl")
    return {CARRY1: folder_bytes(c1), CARRY2: folder_bytes(c2)}


def check_sizes(repo: Path, carried: dict, pack_missing: dict) -> list:
    """One line per call: checkout + its carry (+ Chromium parts not staged here, at their measured size)."""
    base = sum(f.stat().st_size for f in checkout_files(repo))
    lines, ok = [], True
    for call in calls():
        extra = sum(pack_missing.get(c, 0) for c in call.carry)
        total = base + sum(carried.get(c, 0) for c in call.carry) + extra
        fits = total <= LIMITS["travel_bytes"]
        ok &= fits
        lines.append(f"{call.name}: {total / MIB:.1f} MiB (checkout {base / MIB:.1f}"
                     + "".join(f" + {c} {carried.get(c, 0) / MIB:.1f}" for c in call.carry)
                     + (f" + Chromium part not staged here {extra / MIB:.1f}" if extra else "")
                     + f") {'OK' if fits else 'OVER 64 MiB'}")
    if not ok:
        raise UserError("a call would send more than 64 MiB:\n" + "\n".join(lines))
    return lines


def missing_parts(pack: Path | None) -> dict:
    """Chromium bytes each carry folder will hold on the real run but not in a rehearsal without pack.sh."""
    if pack:
        return {}
    return {CARRY1: CHROMIUM_PART1_BYTES, CARRY2: PART2_BYTES}

