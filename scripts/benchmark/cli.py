"""The benchmark's command line: which networks and sizes, then time, measure, report."""

import argparse

import backends
from framework.files import atomic_open
from scripts.benchmark import harness, measures, nets, overhead, report, variants
from scripts.benchmark.harness import log, paired_ratio
from scripts.arguments import check_output, non_negative, non_negative_seconds, positive


def hidden_batch_pairs(text):
    """``"50:100,1000:100"`` -> ``[(50, 100), (1000, 100)]``; ``""`` -> ``[]`` (argparse type)."""
    pairs = []
    if not text.strip():
        return pairs
    for item in (part.strip() for part in text.split(",")):
        try:  # an empty item too (50:100,,1000:100): a typo, as --hidden 100,,100 is
            hidden, batch = (int(v) for v in item.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected hidden:batch pairs of positive integers separated by commas, "
                f"such as 50:100,1000:100; got {item!r} in {text!r}") from None
        if hidden < 1 or batch < 1:
            raise argparse.ArgumentTypeError(f"hidden and batch must be positive; got {item!r}")
        pairs.append((hidden, batch))
    return pairs


def parse(argv=None):
    import scripts.benchmark as package
    p = argparse.ArgumentParser(prog="python -m scripts.benchmark", description=package.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a few steps of every row, for CI")
    p.add_argument("--out", metavar="FILE", help="also write the Markdown tables here")
    p.add_argument("--n", type=positive,
                   help="synthetic training samples (default: 60000; smoke 2000)")
    p.add_argument("--repeats", type=positive, help="timed windows per row (default: 11; smoke 1)")
    p.add_argument("--configs", type=hidden_batch_pairs, default="50:100,50:1000,1000:100",
                   help="hidden:batch pairs to time (default: %(default)s: the book's net at "
                        "batch 100 and 1000, and DeZero's 784-1000-10 GPU example)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    p.add_argument("--deep-batch", type=non_negative, default=100, metavar="B",
                   help="batch of the MultiLayerNet rows (default: %(default)s; 0 skips them)")
    p.add_argument("--conv-batch", type=non_negative, default=100, metavar="B",
                   help="batch of the convolutional rows (default: %(default)s; 0 skips them)")
    p.add_argument("--conv-n", type=positive, metavar="N",
                   help="synthetic images for the convolutional rows, a window's worth "
                        "(default: 2000; smoke 200)")
    p.add_argument("--memory-configs", metavar="H:B,...", type=hidden_batch_pairs,
                   help="measure peak memory (a process per row) only for these hidden:batch "
                        "pairs, '' for none (default: every config; --smoke: the first)")
    p.add_argument("--pause", type=non_negative_seconds,
                   help="seconds between windows (default: 0.3; smoke 0)")
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--serve", help=argparse.SUPPRESS)  # a row timed apart (harness.Apart)
    args = p.parse_args(argv)
    check_output(p, "--out", args.out)  # before the run, not after an hour of it
    args.n = args.n if args.n is not None else (2000 if args.smoke else 60000)
    args.conv_n = args.conv_n if args.conv_n is not None else (200 if args.smoke else 2000)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 11)
    args.grad_hidden = 5 if args.smoke else nets.SIZES[1]
    args.pause = args.pause if args.pause is not None else (0.0 if args.smoke else 0.3)
    if not args.configs and not args.probe and not args.serve:
        p.error("--configs: give at least one hidden:batch pair")
    return args


def costs(rows):
    """The Trainer over the bare loop (both eager), and the layers and Trainer over NumPy
    alone (numpy-bare), as paired ratios less one."""
    def find(kind, device, config):
        return next(r for r in rows if r.kind == kind and r.device == device
                    and r.config == config)
    trainer_cost, framework_cost = {}, {}
    for row in rows:
        if (row.kind, row.device) in (("xpnet-trainer", "numpy"), ("xpnet-eager", "cupy")):
            loop = find("xpnet-loop", row.device, row.config)
            trainer_cost[(row.device,) + row.config] = paired_ratio(row, loop) - 1
        if row.kind in ("xpnet-trainer", "xpnet-loop") and row.device == "numpy":
            bare = find("numpy-bare", "numpy", row.config)
            framework_cost[(row.kind,) + row.config] = paired_ratio(row, bare) - 1
    return trainer_cost, framework_cost


def main(argv=None):
    args = parse(argv)
    if args.probe:
        harness.probe_memory(args.probe, args.n)
        return
    if args.serve:
        harness.serve(args.serve, args.n)
        return
    # Every row shares the allocator settings the Trainer makes (one process):
    # the book loop and PyTorch get the same steady heap as xpnet.
    backends.tune_host_allocator()
    data = harness.synthetic(args.n)
    torch_ok = [] if args.no_torch else variants.torch_devices()
    if not torch_ok and not args.no_torch:
        log("note: torch is not importable here; the PyTorch rows are skipped")
    rows = [row for hidden, batch in args.configs
            for row in variants.rows_for(nets.two_layer(hidden), batch, data, torch_ok)]
    log(f"timing {len(rows)} rows")
    harness.time_rows(rows, args.repeats, args.pause)
    deep_rows = []
    if args.deep_batch:
        deep_rows = [row for net in nets.DEEP_NETS
                     for row in variants.rows_for(net, args.deep_batch, data, torch_ok)]
        log(f"timing {len(deep_rows)} rows of the deep nets")
        harness.time_rows(deep_rows, args.repeats, args.pause)
    conv_rows = []
    if args.conv_batch:
        images = harness.synthetic_images(args.conv_n)
        conv_rows = [row for net in nets.CONV_NETS
                     for row in variants.rows_for(net, args.conv_batch, images, torch_ok)]
        log(f"timing {len(conv_rows)} rows of the convolutional nets")
        harness.time_rows(conv_rows, args.repeats, args.pause)
    floors = {(d, h, b): measures.gemm_floor(d, h, b, args.repeats)
              for h, b in args.configs for d in backends.available() if d in variants.TIMED_BACKENDS}
    trainer_cost, framework_cost = costs(rows)
    log("measuring peak memory, one process per row")
    if args.memory_configs is not None:
        memory_configs = args.memory_configs
    else:  # a smoke run probes one size: each probe is a process importing every library
        memory_configs = args.configs[:1] if args.smoke else args.configs
    for row in rows:
        if (int(row.hidden), row.batch) in memory_configs:
            row.mem = harness.memory_of(row, args.n)
    log("numerical gradient")
    grad_rows, grad_params = measures.numerical_gradient_rows(args.grad_hidden,
                                                              1 if args.smoke else 3)
    log("evaluation memory")
    eval_rows = measures.evaluation_memory(data)
    log("the data check at the door")
    door = measures.door_check_cost(data, rows, args.repeats)
    log("the framework's cost per step")
    costs_per_step = {"tiny": overhead.tiny(rounds=3 if args.smoke else 15,
                                            steps=100 if args.smoke else 2000),
                      "calls": overhead.calls(),
                      "book": overhead.book(rounds=3 if args.smoke else 11,
                                            steps=2 if args.smoke else 40)}
    text = report.report(args, rows, floors, trainer_cost, framework_cost, grad_rows,
                         grad_params, eval_rows, deep_rows, conv_rows, door, costs_per_step)
    print(text)
    if args.out:
        with atomic_open(args.out, "w") as f:
            f.write(text)
