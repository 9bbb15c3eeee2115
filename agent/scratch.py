"""Each kernel's scratch space, its /home/work: ``<scratch_root>/<kernel_id>``.

With ``scratch.quota = "loop"`` (the default) that directory is the mount point of
a per-kernel ext4 filesystem in a sparse image file ``<scratch_root>/<kernel_id>.img``
(mounted ``loop,nosuid,nodev``), so a session that fills its home gets ENOSPC
while the host disk only ever holds the image's size. The filesystem's root belongs
to the session uid/gid, mode 0700. ``mount -o loop`` attaches the loop device with
autoclear, so the last unmount detaches it. ``quota = "none"`` keeps a plain
directory (hosts without loop devices; no size limit).

Blocking functions only; the registry calls them through ``asyncio.to_thread``.
Every failure half-way undoes what was done, so nothing (mount, loop device, image
file) outlives a kernel that could not be created.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from agent.config import MIN_SCRATCH, AgentConfig
from agent.stats import dir_size
from common.errors import KernelCreationFailed

log = logging.getLogger(__name__)

MOUNT_OPTIONS = "loop,nosuid,nodev"
# Lazy inode-table and journal init: the image is a fresh sparse file, so the blocks
# they would zero already read as zeros; nodiscard skips punching holes into it.
MKFS_OPTIONS = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
TIMEOUT = 60.0


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a tool; a missing binary or a hang is a failed run, never an exception."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(argv, -1, "", str(e))


def _must(*argv: str) -> None:
    proc = _run(*argv)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise KernelCreationFailed(f"{argv[0]} failed: {detail[-1] if detail else proc.returncode}")


class ScratchStore:
    """Creates, re-mounts and removes the scratch spaces under one scratch root."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.root = cfg.scratch_root
        self.loop = cfg.scratch.quota == "loop"
        self.preallocate = cfg.scratch.preallocate
        self.uid, self.gid = cfg.jail.uid, cfg.jail.gid

    def path(self, kernel_id: str) -> Path:
        return self.root / kernel_id

    def image(self, kernel_id: str) -> Path:
        return self.root / f"{kernel_id}.img"

    # ---- create ---------------------------------------------------------------------

    def create(self, kernel_id: str, size: int) -> Path:
        """Make the kernel's scratch space (``size`` bytes when loop-mounted)."""
        path = self.path(kernel_id)
        self.root.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
        try:
            if self.loop:
                self._make_image(self.image(kernel_id), max(size, MIN_SCRATCH))
                _must("mount", "-o", MOUNT_OPTIONS, str(self.image(kernel_id)), str(path))
                with contextlib.suppress(FileNotFoundError):
                    (path / "lost+found").rmdir()
            os.chown(path, self.uid, self.gid)
            path.chmod(0o700)
        except BaseException:
            self.remove(kernel_id)
            raise
        return path

    def _make_image(self, image: Path, size: int) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(image, flags, 0o600)
        try:
            if self.preallocate:
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
        except OSError as e:
            raise KernelCreationFailed(
                f"cannot make a {size}-byte scratch image: {e.strerror}") from None
        finally:
            os.close(fd)
        _must("mkfs.ext4", "-q", "-F", "-m", "0",
              "-E", f"{MKFS_OPTIONS},root_owner={self.uid}:{self.gid}", str(image))

    # ---- recovery ------------------------------------------------------------------

    def ensure(self, kernel_id: str) -> Path:
        """A re-adopted kernel's scratch: mounted as it was, or mounted again from its image.

        The mount outlives the agent (it lives in the host's mount namespace); after a
        host reboot it is gone and the image is mounted again. No image: KernelCreationFailed.
        """
        path = self.path(kernel_id)
        if not self.loop or os.path.ismount(path):
            return path
        image = self.image(kernel_id)
        if not image.is_file():
            raise KernelCreationFailed(f"the scratch image of kernel {kernel_id} is missing")
        path.mkdir(mode=0o700, exist_ok=True)
        _must("mount", "-o", MOUNT_OPTIONS, str(image), str(path))
        log.info("mounted the scratch image of kernel %s again", kernel_id)
        return path

    # ---- remove ----------------------------------------------------------------------

    def remove(self, kernel_id: str) -> None:
        """Unmount (lazily if busy), detach the loop device, delete the dir and the image."""
        path, image = self.path(kernel_id), self.image(kernel_id)
        if os.path.ismount(path) and _run("umount", str(path)).returncode != 0:
            log.warning("scratch of kernel %s is busy: unmounting lazily", kernel_id)
            _run("umount", "-l", str(path))
        if image.exists():
            for device in self._loop_devices(image):
                _run("losetup", "-d", device)
        if os.path.ismount(path):
            log.error("cannot unmount the scratch of kernel %s at %s", kernel_id, path)
        else:
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            image.unlink()

    @staticmethod
    def _loop_devices(image: Path) -> list[str]:
        """Loop devices still backed by ``image`` (``losetup -j``)."""
        out = _run("losetup", "-j", str(image)).stdout
        return [line.split(":", 1)[0] for line in out.splitlines() if line.startswith("/dev/")]

    # ---- usage -------------------------------------------------------------------------

    def usage(self, kernel_id: str) -> int:
        """Bytes in use in the kernel's scratch space."""
        path = self.path(kernel_id)
        if self.loop and os.path.ismount(path):
            st = os.statvfs(path)
            return (st.f_blocks - st.f_bfree) * st.f_frsize
        return dir_size(path)
