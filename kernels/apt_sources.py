"""The host's own apt sources, read for mmdebstrap (never a hard-coded mirror).

Reads ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/*.list|*.sources``.
Files with other suffixes (``.disabled``, ``.save`` …) are ignored, as apt does,
and deb822 stanzas carrying ``Enabled: no`` are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostSources:
    """deb822 stanzas (fed to mmdebstrap on stdin) and one-line ``deb …`` entries."""

    deb822: str
    one_line: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.deb822 and not self.one_line


def _enabled_stanzas(text: str) -> list[str]:
    stanzas: list[str] = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines:
            continue
        fields = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[-1].strip()
                  for ln in lines if ":" in ln and not ln[0].isspace()}
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        stanzas.append("\n".join(lines))
    return stanzas


def _one_line_entries(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines()
            if ln.strip().startswith(("deb ", "deb-src ", "deb\t"))]


def read_host_sources(apt_dir: Path = Path("/etc/apt")) -> HostSources:
    """Collect the enabled apt sources of this machine."""
    list_files = [apt_dir / "sources.list"] + sorted((apt_dir / "sources.list.d").glob("*.list"))
    one_line: list[str] = []
    for path in list_files:
        if path.is_file():
            one_line += _one_line_entries(path.read_text(encoding="utf-8"))
    stanzas: list[str] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        stanzas += _enabled_stanzas(path.read_text(encoding="utf-8"))
    return HostSources(deb822="\n\n".join(stanzas) + ("\n" if stanzas else ""),
                       one_line=tuple(one_line))
