"""Turn pytest-benchmark JSON into Markdown tables of images/s and same-run ratios; speed gate.

Usage::

    pytest benchmarks --benchmark-only --benchmark-json=run.json
    python benchmarks/tables.py run.json                 # tables + gate: exit 1 if a required
                                                         # target is missed (or not measured)
    python benchmarks/tables.py run.json b32.json --out benchmarks/results/cpu-<slug>.md
    python benchmarks/tables.py run.json --no-gate       # tables only, always exit 0
    python benchmarks/tables.py run.json --strict        # aspirational targets gate too

Several JSON files are rendered one after the other; every ratio compares two cases of the same
file (same machine, same run). Throughput is ``batch / time`` of one call, using the best
(minimum) round by default: on a shared machine other processes only ever make a round slower
(``--stat median`` or ``mean`` to change). *Paired* ratios use the plain-inference calls timed
right before every round of every case (see README). The gate uses paired ratios when a run has
them (``--gate-ratios times`` for the ``--stat`` times).

Implementations, ratios and targets are data in ``benchmarks/targets.toml``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_TARGETS = HERE / "targets.toml"

LAYER_SETS = ("-", "layer1", "layer2", "layer3", "layer4", "all")

Key = tuple[str, str]  # (layer_set, impl)


@dataclass(frozen=True)
class Ratio:
    label: str
    num: Key
    den: Key
    meaning: str


@dataclass(frozen=True)
class Definitions:
    """What ``targets.toml`` defines: implementation labels (in column order), ratios, targets."""

    impls: dict[str, str]
    ratios: dict[str, Ratio]
    targets: list[dict[str, Any]]


def _key(value: Any, where: str) -> Key:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise SystemExit(f"{where}: a case is [layer set, impl], got {value!r}")
    return (value[0], value[1])


def load_definitions(path: str | Path = DEFAULT_TARGETS) -> Definitions:
    """Read and check ``targets.toml``: every ratio names known cases, every target a ratio."""
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    impls = {str(k): str(v) for k, v in data.get("impls", {}).items()}
    ratios: dict[str, Ratio] = {}
    for row in data.get("ratio", []):
        layers = row.get("for_each_layer") or [None]
        for layer in layers:

            def fill(text: str, layer: str | None = layer) -> str:
                return text if layer is None else text.replace("{layer}", layer)

            rid = fill(row["id"])
            where = f"{path}: ratio {rid!r}"
            num = _key([fill(v) for v in row["num"]], where)
            den = _key([fill(v) for v in row["den"]], where)
            for layer_set, impl in (num, den):
                if layer_set not in LAYER_SETS or impl not in impls:
                    raise SystemExit(
                        f"{where}: unknown case [{layer_set!r}, {impl!r}]; layer sets "
                        f"{LAYER_SETS}, impls from [impls]"
                    )
            if rid in ratios:
                raise SystemExit(f"{where}: defined twice")
            ratios[rid] = Ratio(fill(row["label"]), num, den, fill(row.get("meaning", "")))
    targets: list[dict[str, Any]] = data.get("target", [])
    for t in targets:
        if t["ratio"] not in ratios:
            raise SystemExit(f"{path}: unknown ratio {t['ratio']!r}; known: {sorted(ratios)}")
        if t.get("status", "required") not in ("required", "aspirational"):
            raise SystemExit(f"{path}: status must be 'required' or 'aspirational'")
    return Definitions(impls, ratios, targets)


DEFS = load_definitions()
RATIOS = DEFS.ratios


# --------------------------------------------------------------------------- loading


@dataclass
class Entry:
    device: str
    batch: int
    layer_set: str
    impl: str
    times: dict[str, float]  # min, median, mean, max, stddev (seconds per call)
    rounds: int
    load: list[float]
    vs_plain: float | None  # paired: best interleaved plain call / best round of the case
    map_diff: float | None = None  # engine experiments: max |maps - shipped maps|
    images: int = 0  # images per timed round (the batch, or all N photos of an end-to-end case)

    def ips(self, stat: str) -> float:
        return (self.images or self.batch) / self.times[stat]

    def spread(self) -> float:
        """Relative spread of the rounds: (max - min) / min."""
        return (self.times["max"] - self.times["min"]) / self.times["min"]


@dataclass
class Run:
    path: str
    data: dict[str, Any]
    entries: list[Entry]

    def index(self) -> dict[tuple[str, int], dict[Key, Entry]]:
        out: dict[tuple[str, int], dict[Key, Entry]] = {}
        for e in self.entries:
            out.setdefault((e.device, e.batch), {})[(e.layer_set, e.impl)] = e
        return out


def load_run(path: str | Path) -> Run:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    entries: list[Entry] = []
    for b in data.get("benchmarks", []):
        extra = b.get("extra_info", {})
        if "impl" not in extra:
            continue
        s = b["stats"]
        load: list[float] = []
        for k in ("loadavg_before", "loadavg_after"):
            if extra.get(k):
                load.append(float(extra[k][0]))
        vs_plain = extra.get("vs_plain_paired")
        if extra.get("paired_plain_s") and extra.get("round_s"):
            per_round = int(extra.get("images_per_round", extra["batch"])) / int(extra["batch"])
            vs_plain = per_round * min(extra["paired_plain_s"]) / min(extra["round_s"])
        if extra["impl"] == "plain":
            vs_plain = 1.0
        entries.append(
            Entry(
                device=extra["device"],
                batch=int(extra["batch"]),
                layer_set=extra["layer_set"],
                impl=extra["impl"],
                times={k: float(s[k]) for k in ("min", "median", "mean", "max", "stddev")},
                rounds=int(s.get("rounds", 0)),
                load=load,
                vs_plain=float(vs_plain) if vs_plain is not None else None,
                map_diff=extra.get("max_abs_map_diff_vs_shipped"),
                images=int(extra.get("images_per_round", extra["batch"])),
            )
        )
    return Run(str(path), data, entries)


def ratio_value(cases: dict[Key, Entry], ratio: Ratio, how: str) -> float | None:
    """``how``: ``min``/``median``/``mean`` (ratio of those times) or ``paired``."""
    num, den = cases.get(ratio.num), cases.get(ratio.den)
    if num is None or den is None:
        return None
    if how == "paired":
        if num.vs_plain is None or den.vs_plain is None:
            return None
        return num.vs_plain / den.vs_plain
    return num.ips(how) / den.ips(how)


def slug(text: str) -> str:
    s = re.sub(r"\((r|tm)\)", "", text.lower())
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s or "unknown"


# --------------------------------------------------------------------------- rendering


_WEIGHTS = {"msra": "MSRA ImageNet weights", "random": "seeded random weights"}


def machine_lines(run: Run, stat: str) -> list[str]:
    data, entries = run.data, run.entries
    mi = data.get("machine_info", {})
    x = mi.get("xai_checks", {})
    loads = [v for e in entries for v in e.load]
    lines = [
        f"- CPU: {x.get('cpu_model', mi.get('cpu', {}).get('brand_raw', '?'))}, "
        f"{x.get('cpu_count', '?')} logical cores; torch threads: {x.get('torch_threads', '?')} "
        f"(interop {x.get('torch_interop_threads', '?')})",
        f"- GPU: {x.get('gpu') or 'none'}; CUDA: {x.get('cuda') or 'n/a'}",
        f"- torch {x.get('torch', '?')}, captum {x.get('captum', '?')}, "
        f"grad-cam {x.get('grad_cam', '?')}; Python {mi.get('python_version', '?')}",
        f"- run: {data.get('datetime', '?')} ({Path(run.path).name}); model: ResNet-50, "
        f"{_WEIGHTS.get(x.get('weights', 'msra'), x.get('weights'))}; inputs: seeded "
        "random-normal (N, 3, 224, 224) with random target classes (throughput does not depend "
        "on image content)"
        + (
            f"; the end-to-end cases: {e2e[0].images} real photos per round"
            if (e2e := [e for e in entries if e.impl in ("study_e2e", "engine_photos")])
            else ""
        ),
    ]
    if loads:
        start = x.get("loadavg_at_start")
        lines.append(
            f"- load average (1 min) sampled before/after each case: min {min(loads):.2f}, "
            f"max {max(loads):.2f}"
            + (f"; at start {start[0]:.2f}" if start else "")
            + f" (on {x.get('cpu_count', '?')} cores)"
        )
    lines.append(
        f"- images/s = batch / {stat} time of one call over the timed rounds (after one "
        "warm-up call); ± is the rounds' (max - min) / min. *paired* ratios: plain inference is "
        "timed right before every round of every case; a case's paired ratio to plain is "
        "min t(those plain calls) / min t(case rounds), and a ratio between two cases is the "
        "ratio of their paired ratios to plain; that cancels load that changes between cases"
    )
    return lines


def throughput_table(cases: dict[Key, Entry], stat: str, defs: Definitions = DEFS) -> list[str]:
    impls = [i for i in defs.impls if any(k[1] == i for k in cases)]
    impls += sorted({k[1] for k in cases} - set(impls))
    header = "| layer set | " + " | ".join(defs.impls.get(i, i) for i in impls) + " |"
    lines = [header, "|" + "---|" * (len(impls) + 1)]
    for ls in LAYER_SETS:
        row = [cases.get((ls, i)) for i in impls]
        if not any(row):
            continue
        cells = [
            f"{e.ips(stat):.2f} (±{100 * e.spread():.0f}%)" if e is not None else "" for e in row
        ]
        name = "— (no Grad-CAM)" if ls == "-" else ("all four" if ls == "all" else ls)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(cases: dict[Key, Entry], stat: str, defs: Definitions = DEFS) -> list[str]:
    lines = [
        f"| ratio (images/s over images/s) | {stat} times | paired | meaning |",
        "|---|---|---|---|",
    ]
    for ratio in defs.ratios.values():
        v = ratio_value(cases, ratio, stat)
        if v is None:
            continue
        p = ratio_value(cases, ratio, "paired")
        ps = f"{p:.2f}x" if p is not None else "—"
        lines.append(f"| {ratio.label} | {v:.2f}x | {ps} | {ratio.meaning} |")
    return lines


def gpu_cpu_table(
    idx: dict[tuple[str, int], dict[Key, Entry]], stat: str, defs: Definitions = DEFS
) -> list[str]:
    lines: list[str] = []
    for (device, batch), cases in sorted(idx.items()):
        if device != "cuda" or ("cpu", batch) not in idx:
            continue
        cpu = idx[("cpu", batch)]
        for key, e in sorted(cases.items()):
            if key not in cpu:
                continue
            if not lines:
                lines = ["| batch | layer set | implementation | GPU / CPU |", "|---|---|---|---|"]
            ratio = e.ips(stat) / cpu[key].ips(stat)
            lines.append(
                f"| {batch} | {key[0]} | {defs.impls.get(key[1], key[1])} | {ratio:.1f}x |"
            )
    return lines


@dataclass
class GateResult:
    name: str
    run: str
    device: str
    batch: int
    ratio: str
    how: str
    value: float | None
    minimum: float
    status: str
    why: str

    @property
    def met(self) -> bool:
        return self.value is not None and self.value >= self.minimum

    def outcome(self, strict: bool) -> str:
        if self.value is None:
            return "MISSING"
        if self.met:
            return "PASS"
        return "FAIL" if (self.status == "required" or strict) else "MISS (aspirational)"


def load_targets(path: str | Path) -> list[dict[str, Any]]:
    """The ``[[target]]`` rows of a targets file (checked against its ratios)."""
    return load_definitions(path).targets


def gate(
    runs: list[Run],
    targets: list[dict[str, Any]],
    how: str,
    stat: str,
    ratios: dict[str, Ratio] | None = None,
) -> list[GateResult]:
    """Every target in every run that measured its cases (MISSING if none did)."""
    ratios = RATIOS if ratios is None else ratios
    results = []
    for t in targets:
        device, batch = t.get("device", "cpu"), int(t.get("batch", 8))
        ratio = ratios[t["ratio"]]
        found = False
        for run in runs:
            cases = run.index().get((device, batch), {})
            if ratio.num not in cases or ratio.den not in cases:
                continue
            found = True
            value = ratio_value(cases, ratio, how) if how == "paired" else None
            used = "paired"
            if value is None:
                value, used = ratio_value(cases, ratio, stat), stat
            results.append(_result(t, Path(run.path).name, device, batch, used, value))
        if not found:
            results.append(_result(t, "—", device, batch, how, None))
    return results


def _result(
    t: dict[str, Any], run: str, device: str, batch: int, how: str, value: float | None
) -> GateResult:
    return GateResult(
        name=t["name"],
        run=run,
        device=device,
        batch=batch,
        ratio=t["ratio"],
        how=how,
        value=value,
        minimum=float(t["min"]),
        status=t.get("status", "required"),
        why=" ".join(str(t.get("why", "")).split()),
    )


def gate_lines(
    results: list[GateResult], strict: bool, allow_missing: bool
) -> tuple[list[str], bool]:
    lines = [
        "| target | device, batch | run | measured | minimum | kind | result |",
        "|---|---|---|---|---|---|---|",
    ]
    ok = True
    for r in results:
        out = r.outcome(strict)
        gating = r.status == "required" or strict
        if out == "FAIL" or (out == "MISSING" and gating and not allow_missing):
            ok = False
        value = f"{r.value:.2f}x ({r.how})" if r.value is not None else "—"
        lines.append(
            f"| {r.name} | {r.device}, {r.batch} | {r.run} | {value} | ≥ {r.minimum:g}x | "
            f"{r.status} | {out} |"
        )
    seen: set[str] = set()
    notes = []
    for r in results:
        if r.why and not r.met and r.name not in seen:
            seen.add(r.name)
            notes.append(f"- *{r.name}* ({r.status}): {r.why}")
    if notes:
        lines += ["", "Targets not met:", "", *notes]
    return lines, ok


def render_run(run: Run, stat: str, heading: str, defs: Definitions = DEFS) -> list[str]:
    idx = run.index()
    out = [f"## {heading}", "", *machine_lines(run, stat), ""]
    for (device, batch), cases in sorted(idx.items()):
        out += [
            f"### {device}, batch {batch}: images/s",
            "",
            *throughput_table(cases, stat, defs),
            "",
        ]
        rt = ratio_table(cases, stat, defs)
        if len(rt) > 2:
            out += [f"### {device}, batch {batch}: same-run ratios", "", *rt, ""]
    diffs = [e for e in run.entries if e.map_diff is not None]
    if diffs:
        out += [
            "### Engine experiments: largest difference of the canonical maps (in [0, 1]) from "
            "the shipped engine, on the first two images of the batch",
            "",
            "| device, batch | layer set | experiment | max abs difference |",
            "|---|---|---|---|",
        ]
        for e in diffs:
            out.append(
                f"| {e.device}, {e.batch} | {e.layer_set} | {defs.impls.get(e.impl, e.impl)} | "
                f"{e.map_diff:.2g} |"
            )
        out.append("")
    gc = gpu_cpu_table(idx, stat, defs)
    if gc:
        out += ["### GPU / CPU", "", *gc, ""]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("json", nargs="+", help="pytest-benchmark JSON file(s) (--benchmark-json)")
    p.add_argument("--stat", choices=("min", "median", "mean"), default="min")
    p.add_argument(
        "--gate-ratios",
        choices=("paired", "times"),
        default="paired",
        help="what the gate compares: paired ratios (default; falls back to --stat times when "
        "a run has no paired data) or --stat times",
    )
    p.add_argument("--targets", default=str(DEFAULT_TARGETS))
    p.add_argument("--no-gate", action="store_true", help="tables only; exit 0")
    p.add_argument("--strict", action="store_true", help="aspirational targets gate too")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="a required target whose cases were not run does not fail the gate",
    )
    p.add_argument("--out", help="also write the Markdown here")
    p.add_argument("--title", default="Grad-CAM throughput, ResNet-50")
    p.add_argument("--prepend", action="append", default=[], help="Markdown put after the title")
    p.add_argument("--append", action="append", default=[], help="Markdown appended at the end")
    args = p.parse_args(argv)

    defs = load_definitions(args.targets)
    runs = [load_run(j) for j in args.json]
    runs = [r for r in runs if r.entries]
    if not runs:
        print(f"{args.json}: no xai-checks benchmark cases found", file=sys.stderr)
        return 2
    out = [f"# {args.title}", ""]
    for extra in args.prepend:
        out += [Path(extra).read_text(encoding="utf-8").rstrip(), ""]
    for i, run in enumerate(runs, 1):
        heading = f"Run {i}: {Path(run.path).name}" if len(runs) > 1 else "Run"
        out += render_run(run, args.stat, heading, defs)
    ok = True
    if not args.no_gate:
        how = "paired" if args.gate_ratios == "paired" else args.stat
        results = gate(runs, defs.targets, how, args.stat, defs.ratios)
        gl, ok = gate_lines(results, args.strict, args.allow_missing)
        out += ["## Speed gate (benchmarks/targets.toml)", "", *gl, ""]
        out += [f"**gate: {'PASS' if ok else 'FAIL'}**" + (" (strict)" if args.strict else ""), ""]
    for extra in args.append:
        out += [Path(extra).read_text(encoding="utf-8").rstrip(), ""]
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    if not args.no_gate:
        print(f"gate: {'PASS' if ok else 'FAIL'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
