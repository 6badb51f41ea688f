"""Print shell exports that give uv the package sources pip is configured with on this machine.

    eval "$(python3 .ci/uv_sources.py)"

uv reads its own settings (``UV_DEFAULT_INDEX``, ``UV_INDEX``, ``UV_FIND_LINKS``), never pip's
configuration files or ``PIP_*`` variables. A machine whose pip is pointed at a mirror or at
wheels on its disk would otherwise have uv fetch every wheel from PyPI. pip merges all its
sources and takes the best version in any of them, which uv calls ``unsafe-best-match``; the
exact pins in ``constraints.txt`` decide the versions either way.

A setting pip takes from the environment (``PIP_INDEX_URL`` ...) wins over the same setting in
a file, as in pip; list settings (extra indexes, find-links) are the union of every scope.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

#: pip list setting -> (uv variable, the separator uv splits it on)
LISTS = {"extra-index-url": ("UV_INDEX", " "), "find-links": ("UV_FIND_LINKS", ",")}


def pip_settings() -> dict[str, list[str]]:
    """``pip config list`` as {setting: values}, environment scope first."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    settings: dict[str, list[str]] = {}
    lines = sorted(out.splitlines(), key=lambda line: not line.startswith(":env:"))
    for line in lines:
        scoped, sep, value = line.partition("=")
        if not sep:
            continue
        name = scoped.rsplit(".", 1)[-1]
        for item in shlex.split(value):
            if item not in settings.setdefault(name, []):
                settings[name].append(item)
    return settings


def main() -> None:
    settings = pip_settings()
    exports = {"UV_INDEX_STRATEGY": "unsafe-best-match"}
    if settings.get("index-url"):
        exports["UV_DEFAULT_INDEX"] = settings["index-url"][0]
    for name, (variable, separator) in LISTS.items():
        if settings.get(name):
            exports[variable] = separator.join(settings[name])
    for variable, value in exports.items():
        print(f"export {variable}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
