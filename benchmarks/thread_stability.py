"""How far a study's numbers move with the CPU thread count: float summation order.

The same photos, the same model, the same seeds, run once per thread count, each in its own
process (``torch.set_num_threads`` before anything else touches torch). Then every per-photo
number (ratio, pooled ratio, threshold sweep, box mass, GridPG score, sanity rho) and every
claim's effects (each estimate and CI bound of each claim's verdict, with ``min_n`` lowered
so that a small run still estimates them) are compared between the runs.

    python benchmarks/thread_stability.py --photos 48 --threads 1 2 --json out.json

docs/stability.md states the figures and the tolerance they justify.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: effect fields compared between runs (estimates and the bounds verdicts are decided on)
EFFECT_FIELDS = ("estimate", "ci_low", "ci_high", "effect")
_FIELDS = {(f,) for f in EFFECT_FIELDS}


def run_one(*, threads: int, photos: int, data: str, out: Path, phases: tuple[str, ...]) -> None:
    """Run one study with ``threads`` intra-op threads and pickle its result to ``out``."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    from xai_checks.data import open_photoset
    from xai_checks.models import load_resnet50
    from xai_checks.study import StudyConfig, run_study

    photoset = open_photoset(data, limit=photos, seed=0)
    config = StudyConfig(phases=phases, workers=0)
    result = run_study(load_resnet50(), photoset, config=config)
    out.write_bytes(pickle.dumps(result))


def study_in_subprocess(
    *, threads: int, photos: int, data: str, out: Path, phases: tuple[str, ...]
) -> float:
    """Wall seconds of :func:`run_one` in a fresh interpreter (thread pools start clean)."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from thread_stability import run_one; "
        "run_one(threads=int(sys.argv[2]), photos=int(sys.argv[3]), data=sys.argv[4], "
        "out=Path(sys.argv[5]), phases=tuple(sys.argv[6].split(',')))"
    )
    start = time.perf_counter()
    here = str(Path(__file__).resolve().parent)
    argv = [here, str(threads), str(photos), data, str(out), ",".join(phases)]
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"study with {threads} thread(s) failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def per_photo_numbers(study: Any) -> dict[tuple[Any, ...], float]:
    """Every per-photo number of a study, keyed by (metric, model, photo, layer[, index])."""
    out: dict[tuple[Any, ...], float] = {}
    for name, run in study.runs.items():
        for record in run.records:
            for metric in ("ratio", "ratio_pooled", "box_mass"):
                for layer, value in (record.get(metric) or {}).items():
                    out[(metric, name, record["file"], layer)] = float(value)
            for layer, values in (record.get("sweep") or {}).items():
                for i, value in enumerate(values):
                    out[("sweep", name, record["file"], layer, i)] = float(value)
    if study.gridpg is not None:
        targets = [spec["target_file"] for spec in study.gridpg.specs]
        for name, scores in study.gridpg.scores.items():
            for j, row in enumerate(scores):
                for k, layer in enumerate(study.gridpg.layers):
                    out[("gridpg", name, targets[j], layer)] = float(row[k])
    if study.sanity is not None:
        for step, rho in study.sanity.rho.items():
            for file, value in zip(study.sanity.files, rho, strict=False):
                out[("sanity_rho", step, file)] = math.nan if value is None else float(value)
    return out


def _leaves(node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], float]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, int | float) and not isinstance(node, bool) and path[-1:] in _FIELDS:
        yield path, float(node)


def is_decisive(key: str) -> bool:
    """Whether an effect key is in the SESOI's units: the deciding effect or a control's."""
    parts = key.split("/")
    return parts[0] == "effect" or (
        len(parts) > 2 and parts[0] == "controls" and parts[2] == "effect"
    )


def verdict_effects(study: Any) -> dict[str, dict[str, Any]]:
    """Per claim: its status, SESOI and every effect estimate / CI bound of its verdict."""
    from xai_checks.claims import evaluate, registered_claims

    out: dict[str, dict[str, Any]] = {}
    for claim in registered_claims():
        lowered = claim.with_(min_n=1)  # a small run still estimates every effect
        verdict = evaluate(lowered, study)
        doc = verdict.to_dict()
        effects = {
            "/".join(p): v
            for part in ("effect", "controls", "tests")
            for p, v in _leaves(doc.get(part) or {}, (part,))
        }
        out[claim.id] = {
            "status": verdict.status.value,
            "sesoi": float(claim.sesoi),
            "effects": effects,
        }
    return out


def compare(a: Any, b: Any) -> dict[str, Any]:
    """Differences between two studies of the same photos: per metric, then per claim."""
    pa, pb = per_photo_numbers(a), per_photo_numbers(b)
    if pa.keys() != pb.keys():
        raise ValueError("the two studies do not hold the same per-photo numbers")
    metrics: dict[str, dict[str, Any]] = {}
    for key in pa:
        x, y = pa[key], pb[key]
        both_nan = math.isnan(x) and math.isnan(y)
        diff = 0.0 if both_nan else (math.inf if math.isnan(x) or math.isnan(y) else abs(x - y))
        m = metrics.setdefault(key[0], {"values": 0, "differ_1e-6": 0, "max_abs": 0.0})
        m["values"] += 1
        m["differ_1e-6"] += int(diff > 1e-6)
        if diff > m["max_abs"]:
            m["max_abs"], m["worst"] = diff, [str(k) for k in key[1:]]
    va, vb = verdict_effects(a), verdict_effects(b)
    claims: dict[str, dict[str, Any]] = {}
    for claim_id, left in va.items():
        right = vb[claim_id]
        sesoi = left["sesoi"]
        moves = {
            k: abs(v - right["effects"][k])
            for k, v in left["effects"].items()
            if k in right["effects"] and math.isfinite(v) and math.isfinite(right["effects"][k])
        }
        decisive = {k: v for k, v in moves.items() if is_decisive(k)}
        worst = max(decisive, key=lambda k: decisive[k]) if decisive else None
        other = max((v for k, v in moves.items() if k not in decisive), default=0.0)
        claims[claim_id] = {
            "status": [left["status"], right["status"]],
            "sesoi": sesoi,
            "effects": len(decisive),
            "max_move": decisive[worst] if worst else 0.0,
            "worst": worst,
            "max_move_over_sesoi": (decisive[worst] / sesoi) if worst and sesoi > 0 else None,
            "max_move_other_statistics": other,
        }
    return {"per_photo": metrics, "claims": claims}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--threads", type=int, nargs=2, default=(1, 2))
    parser.add_argument("--data", default="imagenet-samples", help="a folder, or a source name")
    parser.add_argument("--phases", default="ratio,gridpg,sanity,agreement")
    parser.add_argument("--keep", type=Path, default=None, help="keep the pickled studies here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    phases = tuple(args.phases.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        studies, walls = [], []
        for threads in args.threads:
            out = folder / f"study-{threads}t.pickle"
            walls.append(
                study_in_subprocess(
                    threads=threads, photos=args.photos, data=args.data, out=out, phases=phases
                )
            )
            studies.append(pickle.loads(out.read_bytes()))
    figures = {
        "photos": args.photos,
        "threads": list(args.threads),
        "wall_s": walls,
        **compare(studies[0], studies[1]),
    }
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
