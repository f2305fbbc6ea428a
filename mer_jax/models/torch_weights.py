"""Reading a PyTorch state dict (`torch.save(model.state_dict(), path)`) without torch.

Published MER weights are PyTorch `.pth` files (the STSTNet authors' 68 per-subject LOSO
models, for one). A `.pth` is a pickle, and unpickling runs whatever callables the file
names, so `torch.load` of a stranger's file can run code. `read_state_dict` reads the two
layouts `torch.save` writes with a restricted unpickler that resolves only the names a
state dict needs (an `OrderedDict`, PyTorch's tensor-rebuild functions and its typed
storages) and refuses every other one, naming it:

- the zip layout (PyTorch >= 1.6): `<archive>/data.pkl` holds the pickled object, whose
  storages are persistent ids ("storage", storage type, key, location, numel) pointing
  at the raw little-endian bytes of `<archive>/data/<key>`;
- the legacy layout (PyTorch <= 1.5, and `_use_new_zipfile_serialization=False`): five
  pickles in a row (magic number, protocol version, system info, the object, the storage
  keys), then each storage as an int64 element count and its raw bytes.

Tensors come back as numpy arrays (copies, their shapes, strides and offsets honoured).
"""

import collections
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import jax.numpy as jnp
import numpy as np

from mer_jax.errors import UserError

# torch.save's legacy layout starts with this number, then the protocol version.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# The typed storages a state dict's tensors are rebuilt from, by their pickled names.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": np.dtype(jnp.bfloat16),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """What a pickled `torch.<X>Storage` name resolves to: its element dtype."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor_v2(
    storage: np.ndarray,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """`torch._utils._rebuild_tensor_v2` in numpy: a strided view of the storage (which the
    legacy layout fills only after the object; `read_state_dict` copies the views)."""
    del requires_grad, backward_hooks, metadata  # training state, not values
    itemsize = storage.dtype.itemsize
    needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    if storage_offset < 0 or needed > storage.size:
        raise UserError(
            f"a tensor of shape {tuple(size)} reaches past its storage of {storage.size} elements"
        )
    return np.ndarray(
        shape=tuple(size),
        dtype=storage.dtype,
        buffer=storage,
        offset=storage_offset * itemsize,
        strides=tuple(s * itemsize for s in stride),
    )


def _rebuild_parameter(data: np.ndarray, requires_grad: bool = False, hooks: Any = None) -> Any:
    """`torch._utils._rebuild_parameter`: a Parameter is its tensor's values here."""
    del requires_grad, hooks
    return data


# Every global a state dict pickle may name, and what it resolves to.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only `_ALLOWED` names; storages come from `load_storage`."""

    def __init__(
        self,
        file: BinaryIO,
        source: str,
        load_storage: Callable[[str, np.dtype, int], np.ndarray],
    ) -> None:
        super().__init__(file)
        self._source = source
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserError(
                f"{self._source} names {module}.{name}, which a weights file does not need: "
                "only tensors and plain containers are read (a pickle can run code on "
                "loading, so nothing else is)"
            ) from None

    def persistent_load(self, pid: Any) -> np.ndarray:
        # ("storage", storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UserError(f"{self._source}: unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UserError(f"{self._source}: storage {key} has no known element type")
        return self._load_storage(key, storage_type.dtype, numel)


def _storage_array(data: bytes, dtype: np.dtype, numel: int, where: str) -> np.ndarray:
    if len(data) < numel * dtype.itemsize:
        raise UserError(f"{where} holds {len(data)} bytes, fewer than its {numel} elements need")
    return np.frombuffer(data, dtype=dtype, count=numel)


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise UserError(f"{path} is a zip but not a PyTorch checkpoint (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in names and archive.read(byteorder).decode().strip() != "little":
            raise UserError(f"{path} was saved big-endian; only little-endian files are read")

        def load_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise UserError(f"{path} lacks the storage {entry}")
            return _storage_array(archive.read(entry), dtype, numel, f"{path}:{entry}")

        with archive.open(pickles[0]) as handle:
            return _StateDictUnpickler(handle, str(path), load_storage).load()


def _read_legacy(path: Path) -> Any:
    with path.open("rb") as handle:
        header = _StateDictUnpickler(handle, str(path), _no_storage)
        if header.load() != _LEGACY_MAGIC:
            raise UserError(f"{path} is not a PyTorch checkpoint (neither zip nor legacy layout)")
        if header.load() != _LEGACY_PROTOCOL:
            raise UserError(f"{path}: unsupported legacy PyTorch protocol version")
        header.load()  # system info: byte order and type sizes of the saving machine
        storages: dict[str, tuple[np.dtype, int]] = {}
        arrays: dict[str, np.ndarray] = {}

        def declare_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            # The bytes follow the object: hand out an array now, fill it below.
            if key not in arrays:
                storages[key] = (dtype, numel)
                arrays[key] = np.zeros(numel, dtype)
            return arrays[key]

        state = _StateDictUnpickler(handle, str(path), declare_storage).load()
        keys = _StateDictUnpickler(handle, str(path), _no_storage).load()
        for key in keys:
            dtype, numel = storages[str(key)]
            count = int(np.frombuffer(handle.read(8), "<i8")[0])
            data = handle.read(count * dtype.itemsize)
            arrays[str(key)][:] = _storage_array(data, dtype, count, f"{path} storage {key}")
        return state


def _no_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
    raise UserError(f"storage {key} appears outside the checkpoint's object")


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file, by name, as numpy arrays.

    Raises:
        UserError: no such file, not a PyTorch checkpoint, a pickle naming anything
            beyond tensors and plain containers, or an object that is not a dict of
            tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"no weights file {path}")
    try:
        state = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except (
        pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError,
        IndexError, AttributeError,
    ) as error:  # fmt: skip - every way a malformed file fails to unpickle
        raise UserError(f"{path} is not a readable PyTorch checkpoint: {error}") from None
    if not isinstance(state, dict) or not all(
        isinstance(value, np.ndarray) for value in state.values()
    ):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return {str(name): np.array(value) for name, value in state.items()}
