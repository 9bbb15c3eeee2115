"""Rebuild manager/static/vendor/xterm/ from Debian's node-xterm package.

    cd "$(mktemp -d)" && apt-get download node-xterm libjs-xterm
    python3 scripts/vendor_xterm.py node-xterm_*.deb libjs-xterm_*.deb

Debian bookworm's ``libjs-xterm`` ships ``/usr/share/javascript/xterm/xterm.js`` as a
288-byte stub that still calls ``require("./public/Terminal")``, and its addons are
CommonJS files too, so neither loads in a browser. ``node-xterm`` (same source package)
ships the compiled CommonJS modules (``lib/**/*.js``; its ``lib/addons`` is a link into
``libjs-xterm``, hence both packages). This script wraps the modules
reachable from ``lib/public/Terminal.js`` (and ``lib/addons/fit/fit.js``) in a tiny
module table, unmodified apart from dropping their ``sourceMappingURL`` comments, and
writes two browser scripts that define the globals ``Terminal`` and ``fit`` the way
upstream's UMD builds did, plus the stylesheet. No code is fetched from anywhere else.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "manager" / "static" / "vendor" / "xterm"
REQUIRE = re.compile(r"""require\(["']([^"']+)["']\)""")
SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)

LOADER = """\
  var cache = {};
  function load(id) {
    if (cache[id]) { return cache[id].exports; }
    var module = { exports: {} };
    cache[id] = module;
    defs[id].call(module.exports, module.exports, function (rel) {
      return load(resolve(id, rel));
    }, module);
    return module.exports;
  }
  function resolve(from, rel) {
    var parts = from.split("/").slice(0, -1);
    rel.split("/").forEach(function (p) {
      if (p === "..") { parts.pop(); } else if (p !== ".") { parts.push(p); }
    });
    return parts.join("/");
  }
"""


def _modules(lib: Path, entry: str) -> dict[str, str]:
    """Module id (path under lib/, no .js) → source, for everything ``entry`` requires."""
    found: dict[str, str] = {}
    todo = [entry]
    while todo:
        mod = todo.pop()
        if mod in found:
            continue
        source = SOURCE_MAP.sub("", (lib / f"{mod}.js").resolve().read_text())
        found[mod] = source
        for rel in REQUIRE.findall(source):
            if not rel.startswith("."):
                raise SystemExit(f"{mod} requires a package ({rel}); not bundled")
            todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(mod), rel)))
    return found


def bundle(lib: Path, entry: str, global_name: str, attr: str, header: str) -> str:
    """A script that sets ``window[global_name]`` to ``entry``'s exports (``.attr`` of them)."""
    mods = _modules(lib, entry)
    parts = [f"/* {header} */\n(function () {{\n  var defs = {{}};\n"]
    for mod in sorted(mods):
        parts.append(f"  defs[{mod!r}] = function (exports, require, module) {{\n"
                     f"{mods[mod]}\n  }};\n")
    parts.append(LOADER)
    parts.append(f"  window[{global_name!r}] = load({entry!r}){attr};\n"
                 "}());\n")
    return "".join(parts)


def main(deb: str, *more: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path in (deb, *more):
            subprocess.run(["dpkg-deb", "-x", path, tmp], check=True)
        pkg = Path(tmp) / "usr" / "share" / "nodejs" / "xterm"
        lib = pkg / "lib"
        version = subprocess.run(["dpkg-deb", "-f", deb, "Version"], check=True,
                                 capture_output=True, text=True).stdout.strip()
        note = (f"xterm.js, Debian node-xterm {version}, MIT (see LICENSE); "
                "bundled for the browser by scripts/vendor_xterm.py")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "xterm.js").write_text(bundle(lib, "public/Terminal", "Terminal", ".Terminal", note))
        (OUT / "fit.js").write_text(bundle(lib, "addons/fit/fit", "fit", "", note))
        (OUT / "xterm.css").write_bytes((lib / "xterm.css").read_bytes())
    for name in ("xterm.js", "fit.js", "xterm.css"):
        print(name, hashlib.sha256((OUT / name).read_bytes()).hexdigest())


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
