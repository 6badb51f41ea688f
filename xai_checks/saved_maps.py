"""A study's CAM maps on disk (``xai-checks study --save-maps``): ``maps.npz`` in the report
folder, and :func:`load_maps` to read it back.

Per model run (``pretrained`` / ``under_test`` and each control) and per layer, two arrays,
one row per photo of the photo set, in the photo set's order:

- ``raw``: the map at the layer's own resolution ``(N, h, w)``, before upsampling and
  normalisation, as float32;
- ``canonical``: the map the claims measure ``(N, H, W)``, upsampled to the input size and
  min-max normalised to [0, 1], stored as **float16** (a rounding error of at most 2^-12,
  about 2.4e-4, on values in [0, 1]; half the disk of float32).

``ids`` are the photos' files as ``results.json``'s records name them; ``used`` says which
rows hold maps (a photo that could not be decoded has none). The arrays are written batch by
batch into memory-mapped ``.npy`` files and packed (uncompressed) at the end, so a study never
holds more than one batch of maps in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CANONICAL_DTYPE", "MAPS_FILE", "MapWriter", "SavedMaps", "load_maps"]

#: the file's name in a report folder
MAPS_FILE = "maps.npz"
#: canonical maps lie in [0, 1]: float16 keeps them within 2^-12
CANONICAL_DTYPE = np.float16
_KINDS = {"raw": np.float32, "canonical": CANONICAL_DTYPE}


def _key(run: str, layer: str, kind: str) -> str:
    return f"{run}/{layer}/{kind}"


class MapWriter:
    """Writes maps batch by batch (:meth:`add`), then packs them into ``path`` (:meth:`close`).

    ``ids`` name the rows (the photo set's files, in order). Nothing but one batch is held in
    memory: each array is a memory-mapped ``.npy`` in a temporary folder beside ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], *, ids: Sequence[str]) -> None:
        self.path = Path(path)
        self.ids = [str(i) for i in ids]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._arrays: dict[str, np.memmap] = {}
        self._files: dict[str, Path] = {}
        self._used: dict[str, np.ndarray] = {}
        self._layers: dict[str, list[str]] = {}

    def add(
        self,
        run: str,
        indices: Sequence[int],
        *,
        raw: Mapping[str, Any],
        canonical: Mapping[str, Any],
    ) -> None:
        """The maps of photos ``indices`` (rows of ``ids``) for model run ``run``: per layer,
        ``raw`` ``(n, h, w)`` and ``canonical`` ``(n, H, W)`` tensors or arrays."""
        rows = np.asarray(list(indices), dtype=np.int64)
        layers = self._layers.setdefault(run, [])
        for kind, maps in (("raw", raw), ("canonical", canonical)):
            for layer, batch in maps.items():
                values = _numpy(batch)
                if values.shape[0] != len(rows):
                    raise ValueError(
                        f"{run} {layer} {kind}: {values.shape[0]} maps for {len(rows)} photos"
                    )
                key = _key(run, layer, kind)
                array = self._arrays.get(key)
                if array is None:
                    file = self._dir / f"{len(self._arrays)}.npy"
                    self._files[key] = file
                    array = np.lib.format.open_memmap(
                        file,
                        mode="w+",
                        dtype=_KINDS[kind],
                        shape=(len(self.ids), *values.shape[1:]),
                    )
                    self._arrays[key] = array
                    if layer not in layers:
                        layers.append(layer)
                array[rows] = values
        used = self._used.setdefault(run, np.zeros(len(self.ids), dtype=bool))
        used[rows] = True

    def close(self) -> Path:
        """Pack everything into ``path`` (written beside it, then renamed into place)."""
        partial = self._dir / "pack.npz"
        try:
            with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as pack:
                _put(pack, "ids", np.asarray(self.ids, dtype=np.str_))
                _put(pack, "runs", np.asarray(list(self._layers), dtype=np.str_))
                for run, layers in self._layers.items():
                    _put(pack, f"{run}/layers", np.asarray(layers, dtype=np.str_))
                    _put(pack, f"{run}/used", self._used[run])
                for key, array in self._arrays.items():
                    array.flush()
                    pack.write(self._files[key], arcname=f"{key}.npy")
            os.replace(partial, self.path)
        finally:
            self.discard()
        return self.path

    def discard(self) -> None:
        """Remove the temporary arrays (after :meth:`close`, or instead of it)."""
        self._arrays.clear()
        shutil.rmtree(self._dir, ignore_errors=True)


def _numpy(batch: Any) -> np.ndarray:
    if hasattr(batch, "detach"):
        batch = batch.detach().float().cpu().numpy()
    return np.asarray(batch)


def _put(pack: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with pack.open(f"{name}.npy", "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, array, allow_pickle=False)


@dataclass(frozen=True)
class SavedMaps:
    """Maps read back from a ``maps.npz``: :func:`load_maps`.

    ``ids`` are every photo's file; ``runs`` the model runs (``under_test`` or ``pretrained``
    first, then the controls); :meth:`layers`, :meth:`raw`, :meth:`canonical` and
    :meth:`used` read one run's arrays (rows in ``ids`` order; rows of unused photos are 0).
    """

    path: Path
    ids: tuple[str, ...]
    runs: tuple[str, ...]

    def _read(self, name: str) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as pack:
            if name not in pack.files:
                raise KeyError(f"{self.path} holds no {name!r}; runs: {', '.join(self.runs)}")
            return pack[name]

    def _run(self, run: str | None) -> str:
        if run is None:
            return self.runs[0]
        if run not in self.runs:
            raise KeyError(f"no run {run!r} in {self.path}; runs: {', '.join(self.runs)}")
        return run

    def layers(self, run: str | None = None) -> tuple[str, ...]:
        """The layers of ``run`` (default: the model under test), shallow to deep."""
        return tuple(str(x) for x in self._read(f"{self._run(run)}/layers"))

    def used(self, run: str | None = None) -> np.ndarray:
        """(N,) bool: which photos have maps."""
        return self._read(f"{self._run(run)}/used")

    def raw(self, layer: str, run: str | None = None) -> np.ndarray:
        """(N, h, w) float32: the layer's maps at its own resolution."""
        return self._read(_key(self._run(run), layer, "raw"))

    def canonical(self, layer: str, run: str | None = None) -> np.ndarray:
        """(N, H, W) float16: the normalised maps at the input size."""
        return self._read(_key(self._run(run), layer, "canonical"))


def load_maps(path: str | os.PathLike[str]) -> SavedMaps:
    """Open a ``maps.npz`` (or a report folder holding one). Arrays are read when asked for."""
    where = Path(path)
    if where.is_dir():
        where = where / MAPS_FILE
    try:
        with np.load(where, allow_pickle=False) as pack:
            ids = tuple(str(x) for x in pack["ids"])
            runs = tuple(str(x) for x in pack["runs"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{where}: not a maps file written by xai-checks ({exc})") from None
    return SavedMaps(where, ids, runs)
