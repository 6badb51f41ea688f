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

import ast
import shlex
import subprocess
import sys

#: pip list setting -> (uv variable, the separator uv splits it on)
LISTS = {"extra-index-url": ("UV_INDEX", " "), "find-links": ("UV_FIND_LINKS", ",")}


def pip_settings() -> dict[str, list[str]]:
    """This machine's ``pip config list`` as {setting: values}."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return parse_config_list(out)


def parse_config_list(out: str) -> dict[str, list[str]]:
    """``pip config list`` output as {setting: values}, environment scope first."""
    settings: dict[str, list[str]] = {}
    lines = sorted(out.splitlines(), key=lambda line: not line.startswith(":env:"))
    for line in lines:
        scoped, sep, shown = line.partition("=")
        if not sep:
            continue
        # pip shows each value as a Python literal; a list written over several lines in a
        # file is one string with newlines in it
        value = ast.literal_eval(shown) if shown[:1] in ("'", '"') else shown
        name = scoped.rsplit(".", 1)[-1]
        for item in str(value).split():
            if item not in settings.setdefault(name, []):
                settings[name].append(item)
    return settings


def exports_for(settings: dict[str, list[str]]) -> dict[str, str]:
    """The uv variables that carry pip's ``settings``."""
    exports = {"UV_INDEX_STRATEGY": "unsafe-best-match"}
    if settings.get("index-url"):
        exports["UV_DEFAULT_INDEX"] = settings["index-url"][0]
    for name, (variable, separator) in LISTS.items():
        if settings.get(name):
            exports[variable] = separator.join(settings[name])
    return exports


def main() -> None:
    for variable, value in exports_for(pip_settings()).items():
        print(f"export {variable}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
