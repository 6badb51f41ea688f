"""tox's install command: share this machine's torch with the env, then ``pip install``.

    python .ci/tox_pip.py ENV_SITE_PACKAGES [pip install arguments...]

torch with its CUDA libraries is about 6 GB and takes a minute or two to install; every tox
env would hold its own copy. Instead, before the first install into an env, this links
torch, torchvision and the libraries only they need (not numpy or pillow, which an env such
as ``oldest`` pins itself) from a donor interpreter into ``.tox/.shared-torch`` and adds that
folder to the env with a ``.pth`` file. pip then sees torch as installed and leaves it be.

The donor is ``$XAI_CHECKS_TORCH_PYTHON``, else the project's ``.venv/bin/python`` (``make
install``). Set to an empty string, nothing is shared: an env that pins its own torch
(``oldest``, ``newest``) installs it. Without a donor that imports torch, nothing is shared
and pip installs torch as usual. Installs use the pins in ``constraints.txt`` unless
``$XAI_CHECKS_CONSTRAINTS`` names another file (``oldest``: ``constraints-oldest.txt``) or is
empty (no constraints, as ``newest`` needs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARE = ROOT / ".tox" / ".shared-torch"
PTH = "_xai_checks_shared_torch.pth"
#: never shared: the env brings its own (the oldest env pins numpy)
OWN = {"numpy", "pillow", "setuptools", "pip", "wheel"}

_DONOR_SCRIPT = r"""
import json, sys, importlib.metadata as md
from packaging.requirements import Requirement
own = set(json.loads(sys.argv[1]))
todo, seen, out = ["torch", "torchvision"], set(), []
while todo:
    name = todo.pop().lower().replace("_", "-")
    if name in seen or name in own:
        continue
    seen.add(name)
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        continue
    tops = sorted({str(f).split("/")[0] for f in dist.files or () if not str(f).startswith("..")})
    out.append({"name": name, "site": str(dist.locate_file("")), "tops": tops})
    for spec in dist.requires or ():
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            todo.append(req.name)
print(json.dumps(out))
"""


def _donor() -> str | None:
    env = os.environ.get("XAI_CHECKS_TORCH_PYTHON")
    if env == "":
        return None
    candidate = Path(env) if env else ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else None


def share_torch(site_packages: Path) -> None:
    pth = site_packages / PTH
    if pth.exists():
        return
    donor = _donor()
    if donor is None:
        return
    found = subprocess.run(
        [donor, "-c", _DONOR_SCRIPT, json.dumps(sorted(OWN))],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0 or not found.stdout.strip():
        print(f"tox_pip: no torch to share from {donor}; pip installs it", file=sys.stderr)
        return
    dists = json.loads(found.stdout)
    if not any(d["name"] == "torch" for d in dists):
        return
    SHARE.mkdir(parents=True, exist_ok=True)
    for dist in dists:
        for top in dist["tops"]:
            source = Path(dist["site"]) / top
            link = SHARE / top
            if source.exists() and not link.exists() and not top.endswith(".pth"):
                link.symlink_to(source)
    pth.write_text(str(SHARE) + "\n")
    names = ", ".join(d["name"] for d in dists)
    print(f"tox_pip: sharing {names} from {donor} via {pth}", file=sys.stderr)


def main(argv: list[str]) -> int:
    site_packages, pip_args = Path(argv[0]), argv[1:]
    site_packages.mkdir(parents=True, exist_ok=True)
    share_torch(site_packages)
    constraints = os.environ.get("XAI_CHECKS_CONSTRAINTS", str(ROOT / "constraints.txt"))
    extra = ["-c", constraints] if constraints else []
    command = [sys.executable, "-m", "pip", "install", *extra, *pip_args]
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
