"""A small file system of a test's own: an ext4 image (sparse, no blocks reserved for
root) mounted on a loop device, for a disk that can really fill up (and an immutable
flag that stops root). Needs root and loop devices; elsewhere it yields None."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


def _run(*args: str) -> bool:
    return subprocess.run(args, capture_output=True, timeout=60).returncode == 0


@contextlib.contextmanager
def small_disk(directory: Path, megabytes: int = 512) -> Iterator[Path | None]:
    """A file system of `megabytes` mounted at `directory/disk`, removed on exit."""
    image, mount = directory / "disk.img", directory / "disk"
    mount.mkdir()
    mounted = (
        os.geteuid() == 0
        and _run("truncate", "-s", f"{megabytes}M", str(image))
        and _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image))
        and _run("mount", "-o", "loop", str(image), str(mount))
    )
    try:
        yield mount if mounted else None
    finally:
        if mounted and not _run("umount", str(mount)):
            _run("umount", "-l", str(mount))  # something still holds it: detach it now
        image.unlink(missing_ok=True)


def fill(folder: Path) -> list[Path]:
    """Take every free block of `folder`'s file system (remove the files returned to give
    the space back)."""
    bulk, rest = folder / "filler", folder / "filler-rest"
    free = os.statvfs(folder)
    margin = 4 * 1024 * 1024  # the extent tree of the bulk needs blocks of its own
    subprocess.run(
        ["fallocate", "-l", str(max(free.f_bavail * free.f_frsize - margin, 0)), str(bulk)],
        check=True,
    )
    with contextlib.suppress(OSError), rest.open("wb") as out:  # the last blocks, ENOSPC
        while True:
            out.write(b"\0" * 65_536)
            out.flush()
            os.fsync(out.fileno())
    return [bulk, rest]
