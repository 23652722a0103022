"""Read the tensors of a TorchScript archive (OpenAI's released `.pt` files) without running any of its code.

`torch.jit.load` would compile the archive's code and `torch.load` refuses archives under `weights_only`,
so the module tree is unpickled here with an allow-list: TorchScript classes become inert attribute bags,
tensors are rebuilt from the archive's raw storages, and any other global is refused.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from clipworks.errors import CheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """Stands in for a TorchScript module: keeps its pickled attributes and nothing else."""

    def __setstate__(self, state: object) -> None:
        self.attributes = state if isinstance(state, dict) else {}


def _identity_list(items: list) -> list:
    return list(items)


def _rebuild_tensor(storage: tuple[torch.dtype, torch.UntypedStorage], offset: int, size: tuple, stride: tuple,
                    *_: object) -> torch.Tensor:
    dtype, untyped = storage
    return torch.empty(0, dtype=dtype).set_(untyped, offset, tuple(size), tuple(stride))


def is_torchscript_archive(path: Path) -> bool:
    """A TorchScript archive is a zip holding `<name>/code/` and `<name>/constants.pkl` beside `data.pkl`."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, path: Path) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._path = zf, prefix, path
        self._storages: dict[str, torch.UntypedStorage] = {}

    def find_class(self, module: str, name: str) -> object:
        if module.startswith("__torch__"):
            return type(name, (_ScriptObject,), {})
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        if module == "torch.jit._pickle" and name.startswith("build_") and name.endswith("list"):
            return _identity_list
        raise CheckpointError(f"{self._path}: TorchScript archive refers to '{module}.{name}', which is not allowed")

    def persistent_load(self, pid: object) -> tuple[torch.dtype, torch.UntypedStorage]:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise CheckpointError(f"{self._path}: unexpected persistent id in TorchScript archive")
        dtype, key = pid[1], str(pid[2])
        if key not in self._storages:
            raw = bytearray(self._zf.read(f"{self._prefix}data/{key}"))
            self._storages[key] = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        return dtype, self._storages[key]


def _walk(obj: object, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, _ScriptObject):
        for name, value in getattr(obj, "attributes", {}).items():
            _walk(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archived module tree, keyed by its dotted path."""
    with zipfile.ZipFile(path) as zf:
        data_entries = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if not data_entries:
            raise CheckpointError(f"{path}: TorchScript archive has no data.pkl")
        prefix = data_entries[0][: -len("data.pkl")]
        try:
            root = _ArchiveUnpickler(zf.read(data_entries[0]), zf, prefix, path).load()
        except CheckpointError:
            raise
        except Exception as exc:  # a damaged archive: report it, naming the file
            raise CheckpointError(f"{path}: cannot read TorchScript archive ({type(exc).__name__}: {exc})") from exc
    tensors: dict[str, torch.Tensor] = {}
    _walk(root, "", tensors)
    if not tensors:
        raise CheckpointError(f"{path}: TorchScript archive holds no tensors")
    return tensors
