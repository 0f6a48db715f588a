"""The benchmark's Markdown: the machine, the targets, and a table per network family."""

import os
import platform
import time

import numpy as np

import backends
from backends import ops_for
from scripts.benchmark.harness import paired_ratio
from scripts.benchmark.nets import DEEP_HIDDEN
from scripts.benchmark.variants import same_device

#: What each row is held to: (network, measure, target). The ratios are the tables'.
TARGETS = [
    ("TwoLayerNet, batch 100", "CPU: the Trainer against the book's float32 loop", ">= 2x"),
    ("TwoLayerNet, batch 100", "CPU: the Trainer against PyTorch eager", ">= 2x"),
    ("MultiLayerNet 5x100 (and -bn)", "CPU: the Trainer against the book's loop", ">= 1.3x"),
    ("MultiLayerNet 5x100 (and -bn)", "CPU: the Trainer against numpy-bare", "within 15%"),
    ("MultiLayerNet 5x100", "GPU: the Trainer against PyTorch eager", ">= 3x"),
    ("SimpleConvNet, DeepConvNet", "CPU: the Trainer against the book's code", ">= 4x"),
    ("SimpleConvNet, DeepConvNet", "CPU: the Trainer against PyTorch eager",
     ">= 0.67x (within 1.5x)"),
    ("SimpleConvNet", "GPU: the Trainer against PyTorch eager", ">= 2x"),
    ("TwoLayerNet, batch 100", "PyTorch's CPU tensors: xpnet's Trainer against PyTorch's nn step",
     ">= 0.67x (within 1.5x)"),
    ("SimpleConvNet, DeepConvNet", "PyTorch's CPU tensors: xpnet against PyTorch's nn step",
     ">= 0.33x (within 3x)"),
    ("DeepConvNet", "GPU: the Trainer against PyTorch eager", ">= 1.5x"),
    ("the data check at the door", "its time against one epoch of the Trainer", "under 5%"),
    ("TwoLayerNet(4, 4, 3), batch 2", "CPU: the step against the same step hand-written in "
     "NumPy", "<= 1.2x"),
    ("TwoLayerNet(4, 4, 3), batch 2", "Python-level calls a step (gradient + SGD update)",
     "<= 80"),
    ("TwoLayerNet, batch 100", "CPU: the step against careful hand-written NumPy", "<= 1.25x"),
    ("TwoLayerNet, batch 100", "CPU: the Trainer's epoch against the book-style loop",
     ">= 1.3x"),
]


def overhead_section(overhead):
    """The framework's cost per step (``scripts/benchmark/overhead.py``), against its targets."""
    tiny, calls, book = overhead["tiny"], overhead["calls"], overhead["book"]
    met = {True: "met", False: "missed"}
    return ["## The framework's cost per step", "",
            "Where NumPy's own work is negligible (TwoLayerNet(4, 4, 3), batch 2) the step is "
            "nothing but the framework's cost; at the book's size it is the arithmetic's. "
            f"Windows interleaved in this process, {tiny['rounds']} rounds; the ratio is the "
            "median of the paired ratios.", "",
            "| step | xpnet us | hand-written NumPy us | ratio | target |",
            "|---|---:|---:|---:|---|",
            f"| TwoLayerNet(4, 4, 3), batch 2 | {tiny['xpnet_us']:.1f} | {tiny['bare_us']:.1f} "
            f"| {tiny['ratio']:.2f}x | <= 1.2x: {met[tiny['ratio'] <= 1.2]} |",
            f"| TwoLayerNet(784, 50, 10), batch 100 | {book['xpnet_us']:.1f} | "
            f"{book['bare_us']:.1f} | {book['ratio']:.2f}x | <= 1.25x: "
            f"{met[book['ratio'] <= 1.25]} |", "",
            f"Python-level calls in one tiny step (gradient + SGD update, `sys.setprofile`): "
            f"{calls['calls']} (target <= 80: {met[calls['calls'] <= 80]}).", ""]


def machine_lines():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"- CPU: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
             f"NumPy {np.__version__}; xpnet {ops_for(np.zeros(1))!r} (NumPy's BLAS keeps its "
             f"own threads outside xpnet's convolutional network calls)"]
    try:
        import torch
        lines.append(f"- PyTorch {torch.__version__}, {torch.get_num_threads()} threads; "
                     f"full float32 on the GPU (TF32 off for cuDNN and matmul), cuDNN's "
                     f"defaults otherwise")
    except Exception:
        lines.append("- PyTorch: not installed (its rows are skipped)")
    if "cupy" in backends.available():
        b = backends.use("cupy")
        lines.append(f"- GPU: {b.description}; CuPy {b.xp.__version__}")
    else:
        lines.append("- GPU: none usable here (CuPy rows are skipped)")
    return lines


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def _find(rows, kind, device, net):
    return next((r for r in rows if r.kind == kind and r.device == device and r.hidden == net),
                None)


def net_table(rows, title, note, references):
    """A table of rows whose ``hidden`` names a net, each against ``references``:
    ``(column, kind)`` pairs on the CPU (the book's loop, numpy-bare), then PyTorch on
    the same device and xpnet's CPU step."""
    columns = [c for c, _ in references] + ["vs PyTorch, same device", "vs xpnet CPU"]
    out = ["", title, "", note, "",
           "| variant | backend | step | net | batch | ms/step | " + " | ".join(columns) + " |",
           "|---|---|---|---|---:|---:|" + "---:|" * len(columns)]

    def ratio(other, row):
        return fmt_ratio(paired_ratio(other, row) if other is not None else None)
    for row in rows:
        cells = [ratio(_find(rows, kind, "numpy", row.hidden), row) for _, kind in references]
        cells.append(ratio(_find(rows, "torch-eager", same_device(row.device), row.hidden), row))
        cells.append(ratio(_find(rows, "xpnet-trainer", "numpy", row.hidden), row)
                     if row.device != "numpy" else "-")
        out.append(f"| {row.kind} | {row.device} | {getattr(row, 'step', '-')} | {row.hidden} "
                   f"| {row.batch} | {row.ms:.3f} | " + " | ".join(cells) + " |")
    return out


def two_layer_table(rows, floors, trainer_cost, framework_cost):
    out = ["## Training step, TwoLayerNet(784, hidden, 10), float32", "",
           "Speed-ups are the other row's time over this row's (higher is faster), the "
           "median of per-round ratios; `x floor` is this row's time over the five matrix "
           "products alone.", "",
           "| variant | backend | step | hidden | batch | ms/step | steps/s | s per 600 steps "
           "| peak memory MB | vs book loop | vs PyTorch, same device | vs xpnet CPU "
           "| x floor |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        book_row = next(r for r in rows if r.kind == "book-loop" and r.config == row.config)
        torch_row = next((r for r in rows if r.kind == "torch-eager" and r.config == row.config
                          and r.device == same_device(row.device)), None)
        cpu_row = next((r for r in rows if r.kind == "xpnet-trainer" and r.device == "numpy"
                        and r.config == row.config), None)
        vs_cpu = paired_ratio(cpu_row, row) if cpu_row and row.device != "numpy" else None
        mem = "-"
        if row.mem is not None:
            mem = f"{row.mem['rss_mb']:.0f}"
            if row.mem.get("gpu_mb") is not None:
                mem += f" (GPU {row.mem['gpu_mb']:.1f})"
        floor = floors[(row.device, int(row.hidden), row.batch)][0]
        out.append(f"| {row.kind} | {row.device} | {getattr(row, 'step', '-')} "
                   f"| {row.hidden} | {row.batch} | {row.ms:.3f} | {1e3 / row.ms:.0f} "
                   f"| {0.6 * row.ms:.3f} | {mem} | {fmt_ratio(paired_ratio(book_row, row))} "
                   f"| {fmt_ratio(paired_ratio(torch_row, row) if torch_row else None)} "
                   f"| {fmt_ratio(vs_cpu)} | {row.ms / floor:.2f} |")
    out += ["", "Arithmetic floor (the step's matrix products, timed here):", ""]
    for (device, hidden, batch), (ms, gflops, flops) in floors.items():
        out.append(f"- {device}, hidden {hidden}, batch {batch}: "
                   f"{flops / 1e6:.1f} MFLOP of GEMM per step, {ms:.3f} ms ({gflops:.0f} GFLOP/s)")
    out += ["", "The Trainer's own cost (progress bar, loss buffer, epoch-end report), "
            "trainer over bare loop, both eager (on CuPy: xpnet-eager over xpnet-loop):", ""]
    for (device, hidden, batch), cost in trainer_cost.items():
        out.append(f"- {device}, hidden {hidden}, batch {batch}: {100 * cost:+.1f}%")
    out += ["", "What the framework costs over NumPy alone, xpnet's step over the same step "
            "hand-written (numpy-bare):", ""]
    for (kind, hidden, batch), cost in framework_cost.items():
        out.append(f"- {kind}, hidden {hidden}, batch {batch}: {100 * cost:+.1f}%")
    return out


def report(args, rows, floors, trainer_cost, framework_cost, grad_rows, grad_params, eval_rows,
           deep_rows=(), conv_rows=(), door=None, overhead=None):
    out = ["# xpnet benchmark", "",
           f"{time.strftime('%Y-%m-%d')}, `python -m scripts.benchmark"
           f"{' --smoke' if args.smoke else ''}` (N = {args.n} synthetic samples, "
           f"{args.repeats} timed windows per row, median)", ""]
    out += machine_lines() + ["", "## Targets", "", "| network | measure | target |",
                              "|---|---|---|"]
    out += [f"| {net} | {what} | {target} |" for net, what, target in TARGETS] + [""]
    if overhead:
        out += overhead_section(overhead)
    out += two_layer_table(rows, floors, trainer_cost, framework_cost)
    if deep_rows:
        out += net_table(
            deep_rows, f"## Training step, MultiLayerNet(784, {DEEP_HIDDEN}, 10), ReLU, He "
            f"init, float32", "`5x100-bn` is MultiLayerNetExtend with batch norm after each "
            "hidden Affine. SGD, lr 0.01.",
            [("vs book loop", "book-loop"), ("vs numpy-bare", "numpy-bare")])
    if conv_rows:
        out += net_table(
            conv_rows, "## Training step, SimpleConvNet and DeepConvNet (the book's), float32",
            f"Windows of {args.conv_n // conv_rows[0].batch} steps on {args.conv_n} synthetic "
            f"28x28 images; SGD, lr 0.01.", [("vs book loop", "book-loop")])
    out += ["", f"## Numerical gradient, TwoLayerNet(784, {args.grad_hidden}, 10), batch 3, "
            f"float64, {grad_params} parameters", "",
            "| method | backend | seconds | vs book loop | max abs diff vs book |",
            "|---|---|---:|---:|---:|"]
    for g in grad_rows:
        out.append(f"| {g['method']} | {g['device']} | {g['seconds']:.3f} | "
                   f"{fmt_ratio(g['speedup'])} | {g['diff']:.1e} |")
    out += ["", f"## Accuracy over the training set ({args.n} samples), peak traced host memory",
            "", "| evaluation | MB |", "|---|---:|"]
    out += [f"| {name} | {mb:.1f} |" for name, mb in eval_rows]
    if door:
        seconds, epoch, config = door
        share = (f", {100 * seconds / epoch:.1f}% of one epoch of the Trainer (hidden "
                 f"{config[0]}, batch {config[1]}, {epoch:.3f} s)" if epoch else "")
        out += ["", "## The data check at the door", "",
                f"`framework.data.check_data` over the {args.n} training samples: "
                f"{1e3 * seconds:.1f} ms{share}."]
    return "\n".join(out) + "\n"
