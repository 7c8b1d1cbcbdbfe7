"""The command line's files: inputs checked and read, outputs checked before any work and
written under exactly the name given. Every problem is a `CLIError` naming the option and
the file."""

from __future__ import annotations

import os
import pathlib

from .error import CLIError

__all__ = ["input_file", "load_npy", "int_array", "output_file", "output_dir", "save_npy",
           "write_text"]


def input_file(path, option: str, *, empty: bool = False) -> pathlib.Path:
    """``path`` if it is a readable file, not empty unless ``empty``."""
    p = pathlib.Path(path)
    if not p.exists():
        raise CLIError(f"{option} {path}: no such file")
    if p.is_dir():
        raise CLIError(f"{option} {path} is a directory, not a file")
    if not os.access(p, os.R_OK):
        raise CLIError(f"{option} {path}: permission denied")
    if not empty and p.stat().st_size == 0:
        raise CLIError(f"{option} {path} is empty (0 bytes)")
    return p


def load_npy(path, option: str):
    """The array of .npy file ``path`` (no pickles)."""
    import numpy as np
    p = input_file(path, option)
    try:
        data = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CLIError(f"{option} {path} is not a .npy array ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        data.close()
        raise CLIError(f"{option} {path} is an .npz archive, not a .npy array")
    return data


def int_array(x, option: str, path, shape: tuple | None = None):
    """``x`` as int64 if it holds integers that int64 represents (a uint64 above 2**63 - 1
    would wrap to a negative value), of ``shape`` if given."""
    import numpy as np
    if not np.issubdtype(x.dtype, np.integer):
        raise CLIError(f"{option} {path} holds {x.dtype}, not integers")
    if shape is not None and x.shape != shape:
        raise CLIError(f"{option} {path} has shape {x.shape}, the layer needs {shape}")
    if x.dtype.kind == "u" and x.size and int(x.max()) > np.iinfo(np.int64).max:
        raise CLIError(f"{option} {path} holds {x.dtype} values up to {int(x.max())}, beyond "
                       f"int64 (they would wrap to negative values)")
    return x.astype(np.int64)


def _writable_parent(path: pathlib.Path, option: str) -> None:
    """Raise unless the folders of ``path`` exist as folders or can be created."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise CLIError(f"{option} {path}: {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CLIError(f"{option} {path}: {parent} is not writable")
            return


def output_file(path, option: str) -> pathlib.Path | None:
    """``path`` (None stays None) if a file can be written there: not a directory, its
    folders existing as folders or creatable. Call it before the work."""
    if path is None:
        return None
    p = pathlib.Path(path)
    if p.is_dir():
        raise CLIError(f"{option} {path} is a directory; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise CLIError(f"{option} {path}: permission denied")
    _writable_parent(p, option)
    return p


def output_dir(path, option: str) -> pathlib.Path | None:
    """``path`` (None stays None) if it is a folder or one can be made there."""
    if path is None:
        return None
    p = pathlib.Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"{option} {path} is a file, not a directory")
    if p.exists():
        if not os.access(p, os.W_OK | os.X_OK):
            raise CLIError(f"{option} {path} is not writable")
    else:
        _writable_parent(p, option)
    return p


def save_npy(path, array) -> pathlib.Path:
    """Write ``array`` as .npy to exactly ``path`` (``np.save`` would add ``.npy``),
    creating its folders."""
    import numpy as np
    p = pathlib.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        np.save(f, array)
    return p


def write_text(path, text: str) -> pathlib.Path:
    """Write ``text`` to ``path``, creating its folders."""
    p = pathlib.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p
