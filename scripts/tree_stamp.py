"""Which commit a tree is, and whether it is clean, from git's own records.

    python scripts/tree_stamp.py describe [STAMP]   # one line; exit 0 clean, 1 dirty, 2 unknown
    python scripts/tree_stamp.py write [STAMP]      # here, before sending the tree away

Where the tree is a git checkout, ``describe`` asks git (``rev-parse``, ``status``).
The GPU machine gets a copy of the working tree without ``.git``: for it, ``write``
records, from git, the commit, the blob id of every file it tracks, what git ignores
there and whether the tree was clean (``.gpu-stamp.json`` by default; git-ignored and
carried with the tree), and ``describe`` then hashes every file as git does
(``blob <size>\\0<content>``, SHA-1) and compares: a file changed, missing or added
since the stamp makes the tree dirty. Nothing in the environment can say otherwise.
"""

import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, ".gpu-stamp.json")


def git(*args):
    """git's output in the tree's root, or None where git or the repository is missing."""
    try:
        done = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def changes():
    """``git status --porcelain`` lines (untracked files included, ignored ones not)."""
    out = git("status", "--porcelain", "--untracked-files=all")
    return None if out is None else [line for line in out.splitlines() if line.strip()]


def blob_id(path):
    """The id git gives the file's content (a symbolic link: its target)."""
    if os.path.islink(path):
        data = os.readlink(path).encode()
    else:
        with open(path, "rb") as f:
            data = f.read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write(stamp):
    head = git("rev-parse", "HEAD") if own_repository() else None
    listing = git("ls-tree", "-r", "-z", "HEAD")
    ignored = git("ls-files", "--others", "--ignored", "--exclude-standard", "--directory",
                  "-z")
    dirty = changes()
    if None in (head, listing, ignored, dirty):
        raise SystemExit("tree_stamp write: needs git and the repository's .git")
    files = {}
    for entry in listing.split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            mode, kind, sha = meta.split()
            if kind == "blob":
                files[path] = sha
    record = {"commit": head.strip(), "files": files,
              "ignored": sorted(p for p in ignored.split("\0") if p),
              "changes_when_written": dirty}
    tmp = f"{stamp}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, stamp)
    print(f"{stamp}: commit {head.strip()[:7]}, {len(files)} files"
          + (f", {len(dirty)} uncommitted changes" if dirty else ", clean"))


def _present(ignored, stamp):
    """Files in the tree now, less .git, the stamp and what git ignored when it was written."""
    skip_dirs = {p.rstrip("/") for p in ignored if p.endswith("/")}
    skip_files = {p for p in ignored if not p.endswith("/")} | {os.path.relpath(stamp, ROOT)}
    for top, dirs, names in os.walk(ROOT):
        rel_top = os.path.relpath(top, ROOT)
        rel_top = "" if rel_top == "." else rel_top + "/"
        dirs[:] = [d for d in dirs if d != ".git" and rel_top + d not in skip_dirs]
        for name in names:
            rel = rel_top + name
            if rel not in skip_files:
                yield rel


def own_repository():
    """Whether the tree's root is a git checkout's (not a folder inside another one)."""
    top = git("rev-parse", "--show-toplevel")
    return top is not None and os.path.realpath(top.strip()) == os.path.realpath(ROOT)


def describe(stamp):
    """``(line, status)``: status 0 clean, 1 dirty, 2 unknown."""
    head = git("rev-parse", "HEAD") if own_repository() else None
    if head is not None:
        dirty = changes() or []
        short = head.strip()[:7]
        if not dirty:
            return f"{short} (clean; from git)", 0
        shown = ", ".join(line[3:] for line in dirty[:8]) + (", ..." if len(dirty) > 8 else "")
        return f"{short} + uncommitted changes (dirty: {len(dirty)} paths: {shown}; from git)", 1
    if not os.path.exists(stamp):
        return (f"unknown (no .git here, and no {os.path.basename(stamp)}: run "
                f"'python scripts/tree_stamp.py write' before sending the tree)"), 2
    with open(stamp, encoding="utf-8") as f:
        record = json.load(f)
    short = record["commit"][:7]
    differ = []
    for path, sha in record["files"].items():
        full = os.path.join(ROOT, path)
        if not os.path.lexists(full):
            differ.append(f"{path} missing")
        elif blob_id(full) != sha:
            differ.append(f"{path} changed")
    tracked = set(record["files"])
    differ += [f"{p} added" for p in _present(record["ignored"], stamp) if p not in tracked]
    before = record["changes_when_written"]
    if before:
        differ = [f"{len(before)} uncommitted changes when the stamp was written"] + differ
    where = f"no .git here: every file checked against the blobs git listed for {short}"
    if not differ:
        return f"{short} (clean; {where})", 0
    shown = ", ".join(differ[:8]) + (", ..." if len(differ) > 8 else "")
    return f"{short} + changes (dirty: {shown}; {where})", 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("write", "describe") or len(argv) > 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    stamp = os.path.abspath(argv[1]) if len(argv) > 1 else DEFAULT
    if argv[0] == "write":
        write(stamp)
        return 0
    line, status = describe(stamp)
    print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
