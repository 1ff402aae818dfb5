"""marllbd: control plane for learning-driven L4 load balancing."""

import os as _os
import tempfile as _tempfile
from pathlib import Path as _Path

__version__ = "0.1.0"


def _numba_cache_dir() -> None:
    """Give numba's kernel cache a writable home before numba is imported.

    numba caches compiled kernels beside the sources, else under ~/.cache, and
    refuses to import a cached function when neither is writable (a root-owned
    install run by another user without a home, say). NUMBA_CACHE_DIR, when set,
    is left alone; the systemd unit sets it to its CacheDirectory.
    """
    if "NUMBA_CACHE_DIR" in _os.environ or _os.access(_Path(__file__).parent, _os.W_OK):
        return
    home = _os.environ.get("HOME")
    bases = [_os.environ.get("XDG_CACHE_HOME"), home and _os.path.join(home, ".cache")]
    for base in filter(None, bases):
        path = _Path(base) / "marllbd" / "numba"
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            continue
        if _os.access(path, _os.W_OK):
            _os.environ["NUMBA_CACHE_DIR"] = str(path)
            return
    # Nowhere of our own to keep it: a fresh private directory (compiles once per run).
    _os.environ["NUMBA_CACHE_DIR"] = _tempfile.mkdtemp(prefix="marllbd-numba-")


_numba_cache_dir()
