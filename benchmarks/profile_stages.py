"""Where the time of a fused all-layer Grad-CAM goes: a stage-by-stage forward/backward profile.

Usage::

    python benchmarks/profile_stages.py [--batch 8] [--rounds 5] [--device cpu]
                                        [--channels-last] [--ops] [--out FILE.md]

For ResNet-50 (MSRA weights) it times, per stage (stem, layer1..layer4, head = pool + fc):

* ``F``      the stage's forward under ``torch.inference_mode`` (what plain inference pays);
* ``F_grad`` the same forward while autograd records (parameters frozen, input requires grad:
             what the fused Grad-CAM pays for the stages after the shallowest hooked layer);
* ``B``      the stage's backward to its input only (``torch.autograd.grad``, no parameter
             gradients: what the fused Grad-CAM pays to bring d score / dA down to layer1).

Then it adds them up into the cost model of each implementation and the best ratio each can
reach, and times the real calls (plain, fused, and the fused call split into its forward and its
``autograd.grad``). Stages are timed interleaved, best of ``--rounds``, so load from other
processes hits every stage alike. ``--ops`` adds torch.profiler's operator table for one fused
call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def stages(model: nn.Module) -> list[tuple[str, Callable[[Tensor], Tensor]]]:
    """A torchvision ResNet cut into stem, layer1..layer4 and head (pool + flatten + fc)."""
    sub = model.get_submodule
    has_adapter = hasattr(model, "input_adapter")

    def stem(x: Tensor) -> Tensor:
        if has_adapter:
            x = sub("input_adapter")(x)
        return sub("maxpool")(sub("relu")(sub("bn1")(sub("conv1")(x))))

    def head(x: Tensor) -> Tensor:
        return sub("fc")(torch.flatten(sub("avgpool")(x), 1))

    return [
        ("stem", stem),
        *[(n, model.get_submodule(n)) for n in LAYERS],
        ("head", head),
    ]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def clock(fn: Callable[[], object], device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def profile(
    model: nn.Module, x: Tensor, t: Tensor, rounds: int, device: str
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    for p in model.parameters():
        p.requires_grad_(False)
    st = stages(model)
    # Inputs of every stage, computed once.
    ins: list[Tensor] = []
    with torch.inference_mode():
        h = x
        for _, f in st:
            ins.append(h.clone())
            h = f(h)
    ins = [i.clone() for i in ins]  # out of inference mode
    best: dict[str, dict[str, float]] = {n: {"F": 1e9, "F_grad": 1e9, "B": 1e9} for n, _ in st}

    from xai_checks.cam import GradCAM

    cam_all = GradCAM(model, layers=list(LAYERS))
    whole = {"plain": 1e9, "fused": 1e9, "fused_forward": 1e9, "fused_backward": 1e9}

    def fused_split() -> tuple[float, float]:
        acts: dict[str, Tensor] = {}
        hooks = []
        for n in LAYERS:

            def hook(m: nn.Module, a: object, o: Tensor, n: str = n) -> Tensor:
                act = o if o.requires_grad else o.detach().requires_grad_(True)
                acts[n] = act
                return act.clone()

            hooks.append(model.get_submodule(n).register_forward_hook(hook))
        try:
            with torch.enable_grad():
                sync(device)
                t0 = time.perf_counter()
                logits = model(x)
                score = logits.gather(1, t.view(-1, 1)).sum()
                sync(device)
                t1 = time.perf_counter()
                torch.autograd.grad(score, [acts[n] for n in LAYERS])
                sync(device)
                t2 = time.perf_counter()
        finally:
            for hk in hooks:
                hk.remove()
        return t1 - t0, t2 - t1

    for r in range(rounds + 1):  # round 0 is a warm-up
        for (name, f), inp in zip(st, ins, strict=True):

            def fwd(f: Callable[[Tensor], Tensor] = f, inp: Tensor = inp) -> None:
                with torch.inference_mode():
                    f(inp)

            tf = clock(fwd, device)
            leaf = inp.detach().requires_grad_(True)
            with torch.enable_grad():
                sync(device)
                t0 = time.perf_counter()
                out = f(leaf)
                sync(device)
                tg = time.perf_counter() - t0
                g = torch.ones_like(out) / out.numel()

                def bwd(out: Tensor = out, leaf: Tensor = leaf, g: Tensor = g) -> None:
                    torch.autograd.grad(out, leaf, g)

                tb = clock(bwd, device)
            if r:
                b = best[name]
                b["F"], b["F_grad"], b["B"] = min(b["F"], tf), min(b["F_grad"], tg), min(b["B"], tb)

        def plain() -> None:
            with torch.inference_mode():
                model(x)

        tp = clock(plain, device)
        tfu = clock(lambda: cam_all(x, targets=t), device)
        sf, sb = fused_split()
        if r:
            whole["plain"] = min(whole["plain"], tp)
            whole["fused"] = min(whole["fused"], tfu)
            whole["fused_forward"] = min(whole["fused_forward"], sf)
            whole["fused_backward"] = min(whole["fused_backward"], sb)
    for p in model.parameters():
        p.requires_grad_(True)
    return best, whole


def cost_models(best: dict[str, dict[str, float]]) -> dict[str, float]:
    """Seconds per call predicted from the stage costs (upsampling/normalising left out)."""
    order = ["stem", *LAYERS, "head"]
    F = sum(best[s]["F"] for s in order)

    def fg(a: list[str]) -> float:
        return sum(best[s]["F_grad"] for s in a)

    def b(a: list[str]) -> float:
        return sum(best[s]["B"] for s in a)

    after = {layer: order[order.index(layer) + 1 :] for layer in LAYERS}
    head_to = {layer: after[layer] for layer in LAYERS}  # stages the gradient passes through
    single = {
        layer: best["stem"]["F"]
        + sum(best[s]["F"] for s in order[1 : order.index(layer) + 1])
        + fg(after[layer])
        + b(head_to[layer])
        for layer in LAYERS
    }
    fused_all = single["layer1"]  # one forward, graph from layer1 on, backward to layer1
    # Captum / grad-cam record the graph from the input (parameters require grad) and
    # backpropagate to the hooked layer (Captum) or all the way down with parameter gradients
    # (grad-cam; weight gradients cost about as much again as input gradients: not measured here,
    # so the grad-cam model is a lower bound).
    f_all_grad = fg(order)
    captum_loop = sum(f_all_grad + b(head_to[layer]) for layer in LAYERS)
    gradcam_loop_lb = 4 * (f_all_grad + b(order[1:]) + b(["stem"]))
    return {
        "plain": F,
        "fused_all": fused_all,
        **{f"single_{k}": v for k, v in single.items()},
        "captum_loop": captum_loop,
        "gradcam_loop_lower_bound": gradcam_loop_lb,
    }


def markdown(
    best: dict[str, dict[str, float]],
    whole: dict[str, float],
    model_costs: dict[str, float],
    batch: int,
    device: str,
    rounds: int,
    channels_last: bool,
) -> str:
    order = ["stem", *LAYERS, "head"]
    F = sum(best[s]["F"] for s in order)
    lines = [
        f"## Stage profile: {device}, batch {batch}, {torch.get_num_threads()} threads"
        + (", channels_last" if channels_last else "")
        + f" (best of {rounds} interleaved rounds; load {os.getloadavg()[0]:.2f} at the end)",
        "",
        "| stage | F (inference) ms | share of F | F with autograd ms | B to input ms | B / F |",
        "|---|---|---|---|---|---|",
    ]
    for s in order:
        b = best[s]
        lines.append(
            f"| {s} | {1e3 * b['F']:.0f} | {100 * b['F'] / F:.0f}% | {1e3 * b['F_grad']:.0f} | "
            f"{1e3 * b['B']:.0f} | {b['B'] / b['F']:.2f} |"
        )
    lines += [
        "",
        "Cost model (sum of stage times) vs measured whole calls:",
        "",
        "| quantity | seconds | images/s | ratio to plain |",
        "|---|---|---|---|",
    ]

    def row(name: str, sec: float) -> None:
        ref = F if name.startswith("model") else whole["plain"]
        lines.append(f"| {name} | {sec:.3f} | {batch / sec:.2f} | {ref / sec:.2f}x |")

    row("model: plain = sum F", F)
    row(
        "model: fused all = F(stem..layer1) + F_grad(layer2..head) + B(head..layer2)",
        model_costs["fused_all"],
    )
    row("model: layer4 alone", model_costs["single_layer4"])
    row(
        "model: Captum loop (4 x full forward with autograd + B to each layer)",
        model_costs["captum_loop"],
    )
    row(
        "model: grad-cam loop, lower bound (4 x forward + input-grad backward to conv1)",
        model_costs["gradcam_loop_lower_bound"],
    )
    row("measured: plain inference", whole["plain"])
    row("measured: ours fused, all four", whole["fused"])
    row("measured: fused forward (hooks, autograd recording)", whole["fused_forward"])
    row("measured: fused autograd.grad to layer1", whole["fused_backward"])
    b234 = sum(best[s]["B"] for s in ("layer2", "layer3", "layer4", "head"))
    f234 = sum(best[s]["F"] for s in ("layer2", "layer3", "layer4", "head"))
    lines += [
        "",
        f"Backward from the logits to layer1 = {1e3 * b234:.0f} ms = {b234 / f234:.2f}x the "
        f"forward of layer2..head ({1e3 * f234:.0f} ms, {100 * f234 / F:.0f}% of the whole "
        "forward). "
        f"So the fused all-layer pass can reach at most F / (F + B) = {F / (F + b234):.2f}x plain "
        "inference on this machine, whatever the engine does around it; Captum's loop is "
        f"bounded at {model_costs['captum_loop'] / model_costs['fused_all']:.2f}x the fused cost.",
        "",
    ]
    return "\n".join(lines)


def op_table(model: nn.Module, x: Tensor, t: Tensor) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    from xai_checks.cam import GradCAM

    cam = GradCAM(model, layers=list(LAYERS))
    cam(x, targets=t)
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        cam(x, targets=t)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    return "## Operators in one fused all-layer call (torch.profiler)\n\n```\n" + table + "\n```\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--ops", action="store_true", help="add torch.profiler's operator table")
    ap.add_argument("--out", help="write the Markdown here as well")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from xai_checks.models import load_resnet50

    model = load_resnet50("msra", device=args.device)
    g = torch.Generator().manual_seed(4321)
    x = torch.randn(args.batch, 3, 224, 224, generator=g).to(args.device)
    t = torch.randint(0, 1000, (args.batch,), generator=g).to(args.device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    best, whole = profile(model, x, t, args.rounds, args.device)
    text = markdown(
        best, whole, cost_models(best), args.batch, args.device, args.rounds, args.channels_last
    )
    if args.ops:
        text += "\n" + op_table(model, x, t)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
