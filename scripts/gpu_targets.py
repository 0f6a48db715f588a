"""The GPU check's targets: measure each one in a report, and say which are met.

    python scripts/gpu_targets.py REPORT [--tables FILE ...] [--targets FILE] [--dry-run]

``REPORT`` is a report of ``scripts/gpu_check.sh`` (a section a ``## name``, its output
in the code block below it); ``--tables`` adds Markdown files whose tables hold
benchmark rows (the check's ``benchmark.md``). The targets are data
(``scripts/gpu_targets.json``, the default): what each measures, where, and its
bound. Prints ``targets: N met, M missed`` and a Markdown table with a row per
target (a row per dataset for a section named ``...{dataset}...``): measured,
bound, met or missed, and where it was read. Exits 1 when any target is missed; a
target that could not be measured (its section missing, failed or cut off; no row
in the tables) is missed.

``--dry-run``: the bounds of a CPU dry run of the script (each target's ``dry``);
targets without one are listed as not checked, and run lengths are not checked.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TARGETS = os.path.join(HERE, "gpu_targets.json")
DATASETS = ("mnist", "fashion-mnist")


# --- reading a report ---------------------------------------------------------------------

def sections(text):
    """``{name: output}``: each ``## name``'s first code block (its command's output).
    A section without one (not run) maps to None."""
    found = {}
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        block = re.search(r"^```\n(.*?)^```", body, flags=re.M | re.S)
        found.setdefault(name.strip(), block.group(1) if block else None)
    return found


def tables(text):
    """Every Markdown table in ``text``, as lists of ``{column: cell}`` rows."""
    out, header = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header, rows = cells, []
            out.append(rows)
        elif not all(set(c) <= set("-: ") for c in cells):
            rows.append(dict(zip(header, cells)))
    return out


# --- the measures: (value, where) or raise Unmeasured ------------------------------------

class Unmeasured(Exception):
    """The report does not hold the figure (the reason is the message)."""


def _search(pattern, output, what):
    match = re.search(pattern, output, flags=re.M)
    if match is None:
        raise Unmeasured(f"no {what} in its output")
    return match


def seconds(output, target, dry):
    match = _search(r"trained (\d+) steps in ([\d.]+) s", output, "'trained N steps in S s'")
    steps, value = int(match.group(1)), float(match.group(2))
    if not dry and "steps" in target and steps != target["steps"]:
        raise Unmeasured(f"trained {steps} steps; the target is for {target['steps']}")
    return value, f"{steps} steps"


def memory_over_data(output, target, dry):
    held = float(_search(r"GPU memory: ([\d.]+) MB held", output, "'GPU memory' line").group(1))
    data = re.search(r"the data: ([\d.]+) MB", output) or \
        _search(r"training set ([\d.]+) MB", output, "size of the data")
    return held - float(data.group(1)), f"{held:.1f} MB held, data {float(data.group(1)):.1f} MB"


def _backends(output):
    """``[(backend line, block text)]`` of a gradient check's output."""
    parts = re.split(r"^# backend (.+)$", output, flags=re.M)
    found = list(zip(parts[1::2], parts[2::2]))
    if not found:
        raise Unmeasured("no '# backend' block in its output")
    return found


def largest_relative_error(output, target, dry):
    worst = None
    found = _backends(output)
    for head, block in found:
        match = _search(r"^# largest relative error: ([\d.eE+-]+)", block,
                        f"largest relative error for {head.split()[0]}")
        value = float(match.group(1))
        if worst is None or value > worst[0]:
            worst = (value, head.split()[0])
    return worst[0], f"worst: {worst[1]}, of {len(found)} backends"


def largest_mean_abs_difference(output, target, dry):
    worst = None
    found = _backends(output)
    for head, block in found:
        values = [(float(v), k) for k, v in re.findall(r"^(\w+):([\d.eE+-]+)$", block, re.M)]
        if not values:
            raise Unmeasured(f"no per-parameter errors for {head.split()[0]}")
        value, key = max(values)
        if worst is None or value > worst[0]:
            worst = (value, f"{head.split()[0]} {key}")
    return worst[0], f"worst: {worst[1]}, of {len(found)} backends"


def accuracy_gap(output, target, dry, reference=None):
    got = float(_search(r"final test acc: ([\d.]+)", output, "'final test acc'").group(1))
    if reference is None:
        raise Unmeasured(f"acc {got:.4f}, but no CPU reference for this dataset and model "
                         f"in the targets file")
    return abs(got - reference["value"]), \
        f"acc {got:.4f}, CPU {reference['value']:.4f} ({reference['source']})"


def vs_torch(rows, target):
    """The ratio in column ``column`` (default the benchmark's "vs PyTorch, same device") of
    the row whose cells match ``table_row``."""
    want = target["table_row"]
    column = target.get("column", "vs PyTorch, same device")
    for row in rows:
        if all(row.get(key) == value for key, value in want.items()):
            cell = row.get(column, "")
            if not re.fullmatch(r"[\d.]+x", cell):
                raise Unmeasured(f"the row has no ratio in '{column}' ({cell or 'empty'})")
            shown = " ".join(want.values())
            ms = row.get("ms/step")
            return float(cell[:-1]), f"row {shown}" + (f": {ms} ms/step" if ms else "")
    raise Unmeasured(f"no row {want}")


MEASURES = {"seconds": seconds, "memory_over_data": memory_over_data,
            "largest_relative_error": largest_relative_error,
            "largest_mean_abs_difference": largest_mean_abs_difference,
            "accuracy_gap": accuracy_gap}


# --- judging ---------------------------------------------------------------------------

def bound(target, dry):
    """``(operator, value)`` the target holds its measure to (None: not checked)."""
    if dry:
        if "dry" not in target:
            return None
        op = next(op for op in ("below", "max", "min") if op in target)
        return op, target["dry"]
    op = next(op for op in ("below", "max", "min") if op in target)
    return op, target[op]


def met(value, op, limit):
    return {"below": value < limit, "max": value <= limit, "min": value >= limit}[op]


def _show(value, unit=""):
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4g}"
    return f"{text} {unit}".strip() if unit not in ("", "x") else f"{text}{unit}"


def judge(spec, found, rows, dry=False):
    """The rows of the targets' table: dicts with target, measured, bound, result, where."""
    symbols = {"below": "<", "max": "<=", "min": ">="}
    out = []
    for target in spec["targets"]:
        limits = bound(target, dry)
        unit = target.get("unit", "")
        places = []
        if "table_row" in target:
            places.append((target.get("section", "benchmark"), None))
        elif "{dataset}" in target["section"]:
            places = [(target["section"].format(dataset=d), d) for d in DATASETS
                      if target["section"].format(dataset=d) in found] or \
                [(target["section"].format(dataset="*"), None)]
        else:
            places.append((target["section"], None))
        for place, dataset in places:
            row = {"id": target["id"], "what": target["what"] + (f" ({dataset})" if dataset
                                                                   else ""),
                   "bound": "-" if limits is None else
                   f"{symbols[limits[0]]} {_show(limits[1], unit)}",
                   "measured": None, "where": place}
            try:
                if "table_row" in target:
                    here = rows if place == "benchmark" else \
                        [r for t in tables(found.get(place) or "") for r in t]
                    value, note = vs_torch(here, target)
                else:
                    output = found.get(place)
                    if output is None:
                        raise Unmeasured("the section did not run" if place not in found
                                         else "the section has no output")
                    measure = MEASURES[target["measure"]]
                    if target["measure"] == "accuracy_gap":
                        reference = spec.get("cpu_accuracy", {}).get(dataset or "", {}) \
                            .get(target["model"])
                        value, note = measure(output, target, dry, reference)
                    else:
                        value, note = measure(output, target, dry)
                row["measured"], row["where"] = value, f"{place}: {note}"
                if limits is None:
                    row["result"] = "not checked (dry run)"
                else:
                    row["result"] = "met" if met(value, *limits) else "MISSED"
            except Unmeasured as e:
                row["where"] = f"{place}: {e}"
                row["result"] = "not checked (dry run)" if limits is None else \
                    "MISSED (not measured)"
            row["shown"] = _show(row["measured"], unit)
            out.append(row)
    return out


def summary(rows):
    met_n = sum(r["result"] == "met" for r in rows)
    missed = sum(r["result"].startswith("MISSED") for r in rows)
    return met_n, missed


def markdown(rows):
    met_n, missed = summary(rows)
    lines = [f"targets: {met_n} met, {missed} missed", "",
             "| target | measured | bound | result | where |", "|---|---:|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['shown']} | {r['bound']} | {r['result']} "
                     f"| {r['where']} |")
    return "\n".join(lines)


def _read(parser, path, what):
    """The text of ``path``, or argparse's one-line error naming ``what`` and why not."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        parser.error(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="a report of scripts/gpu_check.sh")
    parser.add_argument("--tables", nargs="*", default=[],
                        help="Markdown files with the benchmark's tables")
    parser.add_argument("--targets", default=DEFAULT_TARGETS,
                        help="the targets file (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="a CPU dry run's bounds (each target's 'dry')")
    args = parser.parse_args(argv)
    try:
        spec = json.loads(_read(parser, args.targets, "the targets file"))
    except ValueError as e:
        parser.error(f"the targets file {args.targets} is not JSON: {e}")
    text = _read(parser, args.report, "the report")
    found = sections(text)
    rows = [row for table in tables(found.get("benchmark") or "") for row in table]
    for path in args.tables:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                rows += [row for table in tables(f.read()) for row in table]
    judged = judge(spec, found, rows, args.dry_run)
    print(markdown(judged))
    return 1 if summary(judged)[1] else 0


if __name__ == "__main__":
    sys.exit(main())
