"""On-disk feature store: backbone outputs of the items of a dataset split (or of given videos).

    DIR/store.json        identity (see identity.py), shard size, number of items, views
    DIR/shard_00000/      items [0, S) of the dataset: one .npy per field of the readable ones
        pooled.npy        [n, D]
        frames.npy        [n, T', D]
        hidden_<l>.npy    [n, T', S_l, D_l]   (backbones with hidden levels)
        index.json        rows (item, clip, name, meta, label, path, frames, temporal, spatial) and
                          failed items [{item, path, reason}]
    DIR/shard_00001/ ...

With TEST.NUM_MASKED_VIEWS V > 1 every field is stored per view (`pooled_view<v>.npy`, ...). A shard
is written into a temporary folder of DIR and renamed into place, so a shard folder that exists is
complete: an interrupted extraction resumes by skipping them. `FeatureStore` reads the shards
memory-mapped: a row costs memory only when an episode reads it.
"""
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ego_fsar.models import BackboneOutput
from ego_fsar.utils.atomic_file import atomic_write

from .identity import StoreMismatchError, check_identity

STORE_JSON = "store.json"
INDEX_JSON = "index.json"
FORMAT_VERSION = 1


def shard_name(shard: int) -> str:
    return f"shard_{shard:05d}"


def num_shards(num_items: int, shard_size: int) -> int:
    return -(-num_items // shard_size)


def shard_exists(store_dir: str, shard: int) -> bool:
    """Whether shard `shard` is on disk (then complete: shards are renamed into place when written)."""
    return os.path.isdir(os.path.join(store_dir, shard_name(shard)))


def shard_items(shard: int, num_items: int, shard_size: int) -> List[int]:
    """Dataset items of shard `shard`: [shard * S, min((shard + 1) * S, num_items))."""
    return list(range(shard * shard_size, min((shard + 1) * shard_size, num_items)))


def _field_names(views: int, num_hidden: int) -> List[List[str]]:
    """Per view, the file stems of pooled, frames and each hidden level."""
    suffix = [""] if views == 1 else [f"_view{v}" for v in range(views)]
    return [[f"pooled{s}", f"frames{s}"] + [f"hidden_{level}{s}" for level in range(num_hidden)] for s in suffix]


def _arrays(views: Sequence[BackboneOutput]) -> Dict[str, np.ndarray]:
    """{file stem: array} of a shard's per-view outputs."""
    arrays = {}
    names = _field_names(len(views), len(views[0].hidden or []))
    for view, stems in zip(views, names):
        tensors = [view.pooled, view.frames] + list(view.hidden or [])
        arrays.update({stem: t.detach().cpu().float().numpy() if t.dtype == torch.bfloat16 else t.detach().cpu().numpy()
                       for stem, t in zip(stems, tensors)})
    return arrays


def _dump_json(f, obj) -> None:
    """`obj` as json into the open file `f` (numpy scalars as numbers, anything else unknown as its text)."""
    json.dump(obj, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))


def write_shard(store_dir: str, shard: int, views: Optional[Sequence[BackboneOutput]], rows: List[Dict],
                failed: List[Dict]) -> None:
    """Write shard `shard` (the outputs `views`, one BackboneOutput per view, of its readable `rows`;
    None when none was readable) into a temporary folder of `store_dir`, then rename it into place."""
    tmp = tempfile.mkdtemp(prefix=f".{shard_name(shard)}.", dir=store_dir)
    try:
        for stem, array in (_arrays(views) if views is not None else {}).items():
            np.save(os.path.join(tmp, f"{stem}.npy"), array)
        with open(os.path.join(tmp, INDEX_JSON), "w") as f:
            _dump_json(f, {"rows": rows, "failed": failed})
        os.rename(tmp, os.path.join(store_dir, shard_name(shard)))
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def open_for_writing(store_dir: str, header: Dict) -> None:
    """Create `store_dir` with its store.json, or check that the one there has the same identity and
    layout (resuming); temporary folders of interrupted shards are removed."""
    os.makedirs(store_dir, exist_ok=True)
    path = os.path.join(store_dir, STORE_JSON)
    if not os.path.isfile(path):
        atomic_write(path, lambda f: _dump_json(f, header), "w")
    else:
        with open(path) as f:
            stored = json.load(f)
        check_identity(stored["identity"], header["identity"], store_dir)
        layout = [k for k in ("version", "shard_size", "num_items", "views") if stored.get(k) != header[k]]
        if layout:
            raise StoreMismatchError(f"feature store {store_dir} was written with another layout: " + "; ".join(
                f"{k}: store {stored.get(k)!r} vs run {header[k]!r}" for k in layout)
                + " (FEATURES.SHARD_SIZE must stay the same to resume; or write a new store)")
    for name in os.listdir(store_dir):
        if name.startswith(".shard_"):
            shutil.rmtree(os.path.join(store_dir, name), ignore_errors=True)


class StoredView:
    """One view of a store's rows, read on demand: `index(rows)` -> BackboneOutput of those rows."""

    def __init__(self, shards: List[Dict[str, np.ndarray]], stems: List[str], shard_of_row: np.ndarray,
                 local_row: np.ndarray):
        self.shards, self.stems = shards, stems
        self.shard_of_row, self.local_row = shard_of_row, local_row

    def _field(self, stem: str, rows: np.ndarray) -> torch.Tensor:
        """Field `stem` of `rows` [R]: each distinct row read once from its shard, in file order, then
        repeated where `rows` repeats it."""
        sample = next(s[stem] for s in self.shards if stem in s)
        unique, inverse = np.unique(rows, return_inverse=True)
        out = np.empty((len(unique),) + sample.shape[1:], dtype=sample.dtype)
        shards = self.shard_of_row[unique]
        for shard in np.unique(shards):
            chosen = shards == shard
            out[chosen] = self.shards[shard][stem][self.local_row[unique[chosen]]]
        return torch.from_numpy(out)[torch.from_numpy(inverse.reshape(-1))]

    def index(self, rows: Union[torch.Tensor, np.ndarray, Sequence]) -> BackboneOutput:
        """Rows `rows` (tensor or nested sequence of store rows, shape R) of every field, as CPU tensors
        [*R, ...]."""
        rows = np.asarray(rows, dtype=np.int64)
        flat = [self._field(stem, rows.reshape(-1)) for stem in self.stems]
        fields = [f.reshape(*rows.shape, *f.shape[1:]) for f in flat]
        return BackboneOutput(fields[0], fields[1], fields[2:] or None)


class FeatureStore:
    """Reader of a complete store at `store_dir`.

    `identity`, `header`: store.json; `rows`: {dataset item: store row} of the readable items;
    `failed`: [{item, path, reason}]; `views`: one `StoredView` per view (see `backbone_views`);
    `in_dim`: width D of pooled/frames. Arrays are memory-mapped read-only."""

    def __init__(self, store_dir: str):
        path = os.path.join(store_dir, STORE_JSON)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"FEW_SHOT.FEATURE_STORE {store_dir}: no {STORE_JSON}; write the store with "
                                    f"tools/extract_features.py")
        self.store_dir = store_dir
        with open(path) as f:
            self.header = json.load(f)
        self.identity = self.header["identity"]
        count = num_shards(self.header["num_items"], self.header["shard_size"])
        missing = [shard_name(s) for s in range(count) if not shard_exists(store_dir, s)]
        if missing:
            raise FileNotFoundError(f"feature store {store_dir} is incomplete: {len(missing)} of {count} shards are "
                                    f"missing ({', '.join(missing[:5])}); rerun tools/extract_features.py with the same "
                                    f"config to finish it")
        shards, self.rows, self.failed, self.index_rows = [], {}, [], []
        shard_of_row, local_row = [], []
        for s in range(count):
            folder = os.path.join(store_dir, shard_name(s))
            with open(os.path.join(folder, INDEX_JSON)) as f:
                index = json.load(f)
            shards.append({name[:-4]: np.load(os.path.join(folder, name), mmap_mode="r")
                           for name in os.listdir(folder) if name.endswith(".npy")})
            for local, row in enumerate(index["rows"]):
                self.rows[row["item"]] = len(self.index_rows)
                self.index_rows.append(row)
                shard_of_row.append(s)
                local_row.append(local)
            self.failed += index["failed"]
        if not self.rows:
            raise ValueError(f"feature store {store_dir}: no item could be read ({len(self.failed)} failed; see "
                             f"`failed` in its {INDEX_JSON} files)")
        views = self.header["views"]
        sample = next(s for s in shards if s)
        names = _field_names(views, sum(stem.startswith("hidden_") for stem in sample) // views)
        self.views = [StoredView(shards, stems, np.asarray(shard_of_row), np.asarray(local_row)) for stems in names]
        self.in_dim = int(sample[names[0][0]].shape[-1])

    def check(self, run_identity: Dict) -> None:
        """Raise StoreMismatchError naming each identity field that differs from the run's."""
        check_identity(self.identity, run_identity, self.store_dir)

    def features(self) -> Tuple[List[StoredView], Dict[int, int]]:
        """(views, {item: row}) in the form of the in-memory feature cache (`build_feature_cache`)."""
        return self.views, self.rows
