"""torchvision's published ImageNet weights for reslab's ImageNet networks, cached like torch.hub.

reslab's ImageNet models (He et al. 2016, Table 1; ResNeXt, Xie et al. 2017; Wide ResNet, Zagoruyko and
Komodakis 2016) use torchvision's state-dict names, so torchvision's ``IMAGENET1K_V1`` files load into
them strictly. :func:`torchvision_weights` finds such a file in the torch.hub cache
(``torch.hub.get_dir()/checkpoints``, where torchvision caches it too, so an existing download is
reused) and downloads it only when asked (``download=True``; ``reslab train --download``).

Every file is checked against the SHA-256 prefix in its name (torch.hub's ``name-<hash>.pth``
convention): after a download before it enters the cache, and on every use of a cached file (a
100 MB file takes ~0.1 s; torchvision checks only after downloading). A download goes to a temporary
file beside the target and is renamed into place only once verified; a failure leaves nothing behind.
:func:`cached_weights` is the same for any URL and digest (akamaster's CIFAR checkpoints,
:mod:`reslab.models.convert`, are checked against their full SHA-256).

Deviation from the paper: these are torchvision's weights, not the paper's (Caffe) models. torchvision's
ResNet-50/101/152 put the stride of a bottleneck in its 3x3 convolution ("ResNet v1.5"), as reslab's
builders do by default; their errors are torchvision's, not the paper's Table 3/4 numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

from reslab.errors import CheckpointError, ConfigError, first_line
from reslab.manifest import file_sha256

# torchvision.models.<Name>_Weights.IMAGENET1K_V1.url (tests/test_hub.py checks the table against them).
TORCHVISION_URLS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    "resnext50_32x4d": "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth",
    "wide_resnet50_2": "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
    "wide_resnet101_2": "https://download.pytorch.org/models/wide_resnet101_2-32ee1156.pth",
}

TORCHVISION = "torchvision"  # the value of ``pretrained=`` / ``--init-from`` that selects these weights
_HASH = re.compile(r"-([0-9a-f]{6,64})\.[A-Za-z0-9]+$")  # torch.hub: name-<sha256 prefix>.pth
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``): torchvision's cache."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_url(name: str) -> str:
    """The published URL of torchvision's ``IMAGENET1K_V1`` weights for ``name`` (a :class:`ConfigError` if none)."""
    if name not in TORCHVISION_URLS:
        raise ConfigError(
            f"no torchvision ImageNet weights for model {name!r}; they exist for {', '.join(TORCHVISION_URLS)}"
        )
    return TORCHVISION_URLS[name]


def _filename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _hash_prefix(filename: str) -> str:
    m = _HASH.search(filename)
    if m is None:  # the table's URLs all carry one; guards a hand-edited table
        raise ConfigError(f"{filename}: no SHA-256 prefix in the file name (expected name-<hash>.pth)")
    return m.group(1)


def torchvision_weights(
    name: str,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """The path of torchvision's ``IMAGENET1K_V1`` state-dict file for reslab model ``name``.

    Looks in ``cache_dir`` (default :func:`default_cache_dir`, shared with torchvision) and checks the
    file's SHA-256 against the prefix in its name. A missing file is a :class:`CheckpointError` unless
    ``download=True``: then it is fetched to a temporary file in ``cache_dir``, verified and renamed into
    place (a corrupt cached file is replaced the same way). A failed or mismatching download raises a
    :class:`CheckpointError` and leaves nothing in the cache. ``progress``: a download message and (on a
    terminal) a progress bar on stderr. A name without published weights is a :class:`ConfigError`.
    """
    url = torchvision_url(name)
    return cached_weights(
        url, download=download, cache_dir=cache_dir, progress=progress, what=f"torchvision weights for {name}"
    )


def cached_weights(
    url: str,
    *,
    sha256: str | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    what: str = "weights",
) -> Path:
    """The cached copy of ``url`` (see :func:`torchvision_weights`), checked against ``sha256`` (the full
    digest or a prefix; default: the prefix in the file name, torch.hub's ``name-<hash>.pth``)."""
    filename = _filename(url)
    prefix = sha256 or _hash_prefix(filename)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / filename
    if path.is_file():
        if file_sha256(path).startswith(prefix):
            return path
        if not download:
            raise CheckpointError(
                f"{path} is corrupt (its SHA-256 does not start with {prefix}); delete it, or pass "
                "--download (CLI) / download=True (API) to fetch it again"
            )
    elif not download:
        host = url.split("/")[2] if "://" in url and url.split("/")[2] else url
        raise CheckpointError(
            f"{what} not found at {path}; pass --download (CLI) / download=True (API) to fetch them from {host}"
        )
    _download(url, path, prefix, progress)
    return path


def _download(url: str, path: Path, prefix: str, progress: bool) -> None:
    """``url`` -> ``path`` through a temporary sibling, renamed only after its SHA-256 matches ``prefix``."""
    import http.client
    import urllib.error
    import urllib.request

    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        if progress:
            print(f'Downloading: "{url}" to {path}', file=sys.stderr)
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            req = urllib.request.Request(url, headers={"User-Agent": "reslab"})
            with urllib.request.urlopen(req, timeout=60) as r:
                total = r.headers.get("Content-Length") if hasattr(r, "headers") else None
                bar = _bar(int(total) if total and total.isdigit() else None, progress)
                try:
                    while chunk := r.read(_CHUNK):
                        f.write(chunk)
                        h.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
            f.flush()
            os.fsync(f.fileno())
        digest = h.hexdigest()
        if not digest.startswith(prefix):
            raise CheckpointError(
                f"download of {url} is corrupt: SHA-256 {digest[:16]}... does not start with {prefix}; "
                "nothing was saved"
            )
        os.replace(tmp, path)
        tmp = None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        line = first_line(reason, 160, default=type(e).__name__)
        raise CheckpointError(f"cannot download {url}: {line}; nothing was saved") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            for d in created:  # folders this call made, innermost first, if still empty
                with contextlib.suppress(OSError):
                    d.rmdir()


def _bar(total: int | None, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm

    # disable=None: a bar only on a terminal, so logs and pipes get the one "Downloading" line.
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, disable=None)
