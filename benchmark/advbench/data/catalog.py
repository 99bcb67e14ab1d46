"""The datasets of a run: loaded once through their plugins, their splits decoded on first use."""

from __future__ import annotations

from typing import Literal

from advbench.api import ImageSplit, ReidDataset
from advbench.config import RunConfig
from advbench.data.images import load_split
from advbench.plugins import Registry

SplitName = Literal["train", "query", "gallery"]


class DatasetCatalog:
    """Looks up datasets by name for one :class:`RunConfig` (params, data root, input size)."""

    def __init__(self, config: RunConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self._data: dict[str, ReidDataset] = {}
        self._splits: dict[tuple[str, str], ImageSplit] = {}

    def get(self, name: str) -> ReidDataset:
        if name not in self._data:
            entry, _ = self.registry.get("dataset", name)
            params = {**entry.spec.defaults, **self.config.dataset_params.get(name, {})}
            cache = self.config.cache_dir / "datasets"
            self._data[name] = entry.spec.load(self.config.data_root, cache, **params)
        return self._data[name]

    def embedded(self, name: str) -> bool:
        return bool(self.registry.get("dataset", name)[0].spec.embedded)

    def input_size(self, name: str) -> tuple[int, int]:
        """``--input-size``, else the dataset's own crop size, else its spec's."""
        if self.config.input_size:
            return self.config.input_size
        size = self.get(name).info.get("input_size") or self.registry.get("dataset", name)[0].spec.input_size
        return (int(size[0]), int(size[1]))

    def split(self, name: str, split: SplitName) -> ImageSplit:
        """A split decoded at the run's input size (cached on disk, read in batches)."""
        if (name, split) not in self._splits:
            self._splits[(name, split)] = load_split(
                getattr(self.get(name), split),
                self.input_size(name),
                cache_dir=self.config.cache_dir,
                desc=f"{name} {split} images",
                progress=self.config.progress,
            )
        return self._splits[(name, split)]
