"""Downloading a dataset's files from its mirrors: each checked against its MD5 and written
atomically, so a failed download leaves nothing under the final name."""

import hashlib
import os
import urllib.error
import urllib.request

import backends
from backends.trust import private_folder
from framework.datasets.catalog import FILENAMES, PARTS, DatasetError
from framework.datasets.locate import PRIVATE_CACHE, find_file
from framework.files import atomic_open


def bases(spec):
    """The base URLs to try, in order: the dataset's mirrors, or the one its variable
    (``XPNET_MNIST_MIRROR``...: the settings, checked when read) names."""
    override = getattr(backends.settings(), spec.mirror_env[len("XPNET_"):].lower())
    if override is not None:
        return [override]
    return list(spec.mirrors)


def fetch(url, dest, md5, timeout=60):
    """Download ``url`` to ``dest`` through a temporary file, checking its MD5.

    The file appears under its final name only when complete and verified;
    on any failure the temporary file is removed and DatasetError says why.
    """
    from tqdm.auto import tqdm

    with atomic_open(dest, prefix=".download-") as out:
        digest = hashlib.md5()
        received = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.headers.get("Content-Length")
                total = int(total) if total and total.isdigit() else None
                with tqdm(total=total, unit="B", unit_scale=True, leave=False,
                          desc=os.path.basename(dest)) as bar:
                    while True:
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            raise DatasetError(f"HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise DatasetError(f"unreachable ({e.reason})") from None
        except (OSError, ValueError) as e:  # includes http.client.IncompleteRead, timeouts
            raise DatasetError(f"connection failed after {received} bytes "
                               f"({type(e).__name__}: {e})") from None
        if total is not None and received != total:
            raise DatasetError(f"connection dropped after {received} of {total} bytes")
        if digest.hexdigest() != md5:
            raise DatasetError(f"MD5 mismatch: got {digest.hexdigest()}, expected {md5}")


def fetch_missing(spec, directory, tried, private=False):
    """Fetch every missing part into ``directory``; returns the paths, or None. Parts
    fetched before a failure stay for the next try; a folder made here and left empty by
    the failure goes again (it would read as "missing" files, not "does not exist").
    ``private`` (xpnet's cache): the folder is made 0700, and one that others may write
    is not downloaded into (``tried`` says why)."""
    made = not os.path.isdir(directory)
    if private:
        folder, why = private_folder(directory)
        if folder is None:
            tried.append(f"{directory}: not downloaded into: {why}; {PRIVATE_CACHE}")
            return None
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for part in PARTS:
        existing = find_file(directory, part)
        if existing:
            paths[part] = existing
            continue
        dest = os.path.join(directory, FILENAMES[part])
        for base in bases(spec):
            url = base + FILENAMES[part]
            try:
                fetch(url, dest, spec.md5[part])
            except DatasetError as e:
                tried.append(f"{url}: {e}")
                continue
            paths[part] = dest
            break
        else:
            if made and not os.listdir(directory):
                os.rmdir(directory)
            return None
    return paths
