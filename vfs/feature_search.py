"""The notebook-friendly entry point: one object per (dataset, model, layer, grid).

The model is loaded only when something needs it: indexing, or a query image that is not in the
cache. Which cache to read follows from the model's :class:`~vfs.features.models.ModelCard`, which a
:class:`FeatureSearch` that loads a model saves under ``<cache_dir>/.models/``, keyed by
:func:`~vfs.features.models.weights_identity`; with it, a search from a dataset image reads the image's
cached grid and runs the fused CPU kernel without importing torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vfs.cache.feature_cache import FeatureCache, cache_path, locked
from vfs.cache.indexing import DEFAULT_CACHE_DIR, SHARD_IMAGES, IndexSummary, Progress, build_index, cache_spec
from vfs.cache.mirror import DEFAULT_MIRROR_ROOT, is_remote, mirror_folder, pull_cache, push_cache
from vfs.errors import CacheError, ImageError, MaskError, ModelError
from vfs.features.extraction import ExtractionEngine, get_engine
from vfs.features.geometry import box_to_grid, load_mask, mask_to_grid
from vfs.features.images import DEFAULT_MAX_PIXELS, load_image
from vfs.features.label_names import LabelNames, read_label_names
from vfs.features.models import DEFAULT_MODEL, FeatureModel, ModelCard, load_model, weights_identity
from vfs.features.region_alone import BACKGROUNDS, region_alone_grid, region_box_of_mask
from vfs.features.sources import DatasetSource, is_uri
from vfs.similarity.exact import Query, SearchResult, SimilarityBackend, search
from vfs.similarity.region_set import RegionSetResult, combine_region_searches
from vfs.similarity.scales import scale_level, search_scales

if TYPE_CHECKING:
    from vfs.similarity.approximate import Shortlist

ImageSource = str | Path | bytes | Image.Image

#: Folder of ``cache_dir`` holding the cards of the models loaded for it.
MODEL_CARDS = ".models"


@dataclass(frozen=True)
class QueryRegion:
    """One region of a multi-region query: an image (dataset file or not), a box or mask in its pixels, and
    whether the region is one the results should *not* resemble."""

    image: ImageSource
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | str | Path | None = None
    negative: bool = False


def _card_file(cache_dir: Path, identity: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / MODEL_CARDS / f"{key}.json"


def saved_card(cache_dir: Path, identity: dict[str, Any] | None) -> ModelCard | None:
    """The card saved for the model ``identity`` describes, or None."""
    if identity is None:
        return None
    try:
        record = json.loads(_card_file(cache_dir, identity).read_text())
        return ModelCard.from_json(json.dumps(record["card"])) if record["identity"] == identity else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_card(cache_dir: Path, identity: dict[str, Any] | None, card: ModelCard) -> None:
    """Save ``card`` for later processes (atomically; a cache folder that cannot be written is no error)."""
    if identity is None:
        return
    target = _card_file(cache_dir, identity)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, prefix=".tmp-", suffix=".json", delete=False) as out:
            json.dump({"identity": identity, "card": json.loads(card.to_json())}, out, sort_keys=True)
        os.replace(out.name, target)
    except OSError:
        pass


class FeatureSearch:
    """Search a folder of images for regions that a model's layer sees as alike.

    >>> fs = FeatureSearch("photos", layer="blocks.5")      # doctest: +SKIP
    >>> fs.index()                                          # doctest: +SKIP
    >>> result = fs.search("photos/cat.jpg", box=(40, 30, 120, 110), top_k=5)  # doctest: +SKIP
    >>> [(m.path, m.score, m.box) for m in result.matches]  # doctest: +SKIP
    """

    def __init__(self, data: str | Path, model: str | FeatureModel = DEFAULT_MODEL, layer: str | None = None,
                 grid: int | None = None, weights: str | Path | None = None,
                 cache_dir: str | Path = DEFAULT_CACHE_DIR, device: str | None = None,
                 backend: SimilarityBackend | str = "auto", mirror_root: str | Path = DEFAULT_MIRROR_ROOT):
        self.data = Path(data).expanduser()
        # where the images are read from for indexing: the folder, or a pyarrow.fs URI as given
        self.location: str | Path = data if is_uri(data) else self.data
        # a cache directory on object storage is mirrored in a local folder (see vfs.cache.mirror)
        self.cache_store = str(cache_dir) if is_remote(cache_dir) else None
        self.cache_dir = (mirror_folder(str(cache_dir), mirror_root) if self.cache_store is not None
                          else Path(cache_dir).expanduser())
        self.backend = backend
        self._cache: FeatureCache | None = None
        self._shortlist: Shortlist | None = None
        self._levels: dict[float, FeatureSearch] = {}
        self._named_labels: tuple[FeatureCache, list[str | None]] | None = None  # for the cache they name
        self._backgrounds: list[tuple[int, Image.Image]] | None = None  # (row, photo) a region alone is pasted onto
        self._lock = threading.Lock()
        # re-entrant: scale_level holds it while loading the model, which takes it too
        self._model_lock = threading.RLock()
        self._layer_name, self._grid = layer, grid
        self._model: FeatureModel | None = model if isinstance(model, FeatureModel) else None
        self._request = (str(model), weights, device)  # what _load_model loads when no model was given
        self.card: ModelCard | None = None
        card = model.card if isinstance(model, FeatureModel) else (
            saved_card(self.cache_dir, weights_identity(model, weights)) or self._load_model().card)
        self._use(card)

    def _use(self, card: ModelCard) -> None:
        self.card = card
        self.layer = card.layer(self._layer_name) if self._layer_name else card.default_layer
        self.spec = cache_spec(card, self.layer, self._grid)
        self.cache_path = cache_path(self.cache_dir, self.location, self.spec)

    def _load_model(self) -> FeatureModel:
        """Load the requested model once and save its card; where the saved card was out of date,
        switch to the model's own (layer, spec and cache path follow)."""
        with self._model_lock:
            if self._model is None:
                name, weights, device = self._request
                model = load_model(name, weights, device)
                save_card(self.cache_dir, weights_identity(name, weights), model.card)
                if self.card is not None and model.card != self.card:
                    with self._lock:
                        self._use(model.card)
                        self._cache = self._shortlist = None
                self._model = model
            return self._model

    @property
    def model(self) -> FeatureModel:
        """The model, loaded on first use (a search from dataset images does not need it)."""
        return self._model if self._model is not None else self._load_model()

    @property
    def grid(self) -> int:
        return self.spec.grid

    def index(self, batch_size: int = 32, workers: int = 2, progress: Callable[[Progress], None] | None = None,
              cancel: threading.Event | None = None, shard_images: int = SHARD_IMAGES,
              engine: str | ExtractionEngine = "local", **engine_options: Any) -> IndexSummary:
        """Extract what is new or changed; the open cache is reloaded afterwards.

        ``engine``: where features are extracted, by registered name (``"local"``: decoding threads
        and the model in this process; ``"ray"``: Ray Data actors, see :mod:`vfs.features.ray_extraction`) or an
        :class:`~vfs.features.extraction.ExtractionEngine`. A named engine is made with ``workers`` (decoding
        threads, or Ray model actors) and ``engine_options``, e.g. ``address=``, ``cpus_per_worker=``
        or ``decode_threads=`` for Ray.
        """
        if engine_options and not isinstance(engine, str):
            raise TypeError("engine options apply to an engine given by name")
        extractor = get_engine(engine, workers=workers, **engine_options) if isinstance(engine, str) else engine
        model = self.model
        self._pull()  # a mirrored cache is brought up to date first, so only what is new is extracted
        summary = build_index(self.location, model, self.layer, self.spec.grid, self.cache_dir, batch_size,
                              workers, progress, cancel, shard_images=shard_images, engine=extractor)
        if self.cache_store is not None and summary.images:
            push_cache(self.cache_path, self.cache_store, self._relative_cache_path)
        with self._lock:
            self._cache = self._shortlist = None
        return summary

    @property
    def _relative_cache_path(self) -> str:
        return self.cache_path.relative_to(self.cache_dir).as_posix()

    def _pull(self) -> None:
        if self.cache_store is not None:
            pull_cache(self.cache_store, self._relative_cache_path, self.cache_path)

    @property
    def cache(self) -> FeatureCache:
        try:
            return self._open_cache()
        except CacheError:
            if self._model is not None:
                raise
        self._load_model()  # no cache where the saved card points: it may be out of date
        return self._open_cache()

    def _open_cache(self) -> FeatureCache:
        with self._lock:
            if self._cache is None:
                self._pull()
                self._cache = FeatureCache.open(self.cache_path, self.data)
            return self._cache

    @functools.cached_property
    def label_names(self) -> LabelNames:
        """The readable names of the dataset's labels (:mod:`vfs.features.label_names`), read once."""
        return LabelNames() if is_uri(self.location) else read_label_names(self.data)

    def label_name(self, label: str | None) -> str | None:
        """How ``label`` (a folder name, e.g. a match's) is shown: its readable name."""
        return self.label_names.name(label)

    @property
    def named_labels(self) -> list[str | None]:
        """Every cache row's label by its readable name, in cache order (what plots, votes and filters show)."""
        cache = self.cache
        with self._lock:
            if self._named_labels is None or self._named_labels[0] is not cache:
                self._named_labels = (cache, self.label_names.names_of(cache.labels))
            return self._named_labels[1]

    def query_features(self, image: ImageSource) -> tuple[np.ndarray, tuple[int, int]]:
        """The query grid (C, G, G) float32 (rounded through float16 like the cache) and the image size."""
        path = None if isinstance(image, (bytes, Image.Image)) else Path(image).expanduser()
        index = self._cache_row(path) if path is not None else None
        if index is not None:  # a dataset image: its cached grid, no forward pass
            width, height = self.cache.image_sizes[index]
            return self.cache.features(index).astype(np.float32), (int(width), int(height))
        picture = load_image(path if path is not None else image, max_pixels=DEFAULT_MAX_PIXELS)
        model = self.model  # first: loading it may correct the layer and grid of an out-of-date card
        grid = model.grid_features(model.preprocessing(picture)[None], self.layer, self.spec.grid)
        return grid[0].numpy().astype(np.float16).astype(np.float32), picture.size

    def region_alone_features(self, image: ImageSource, mask: np.ndarray | str | Path | None = None,
                              box: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """The query grid of the region alone (:mod:`vfs.features.region_alone`: the box, or the mask's
        bounding box, pasted onto a few dataset photos, grids averaged) and the image size."""
        if (mask is None) == (box is None):
            raise ValueError("Give exactly one of mask= or box=.")
        path = None if isinstance(image, (bytes, Image.Image)) else Path(image).expanduser()
        picture = load_image(path if path is not None else image, max_pixels=DEFAULT_MAX_PIXELS)
        if box is None:
            box = region_box_of_mask(load_mask(mask, picture.size) if isinstance(mask, (str, Path)) else mask,
                                     picture.size)
        model = self.model  # first: loading it may correct the layer and grid of an out-of-date card
        own_row = self._cache_row(path) if path is not None else None
        backgrounds = [photo for row, photo in self.background_photos() if row != own_row][:BACKGROUNDS]
        return region_alone_grid(model, self.layer, self.spec.grid, picture, box, backgrounds), picture.size

    def background_photos(self) -> list[tuple[int, Image.Image]]:
        """(row, photo at the model's input size) that a region alone is pasted onto: unless
        :meth:`use_backgrounds` chose them, one more dataset photo than
        :data:`~vfs.features.region_alone.BACKGROUNDS`, spread evenly over the cache, so a query from among them
        still gets that many; an unreadable one gives way to the next readable photo."""
        cache = self.cache  # first: opening it takes the lock
        with self._lock:
            if self._backgrounds is None:
                starts = np.linspace(0, len(cache), BACKGROUNDS + 1, endpoint=False).astype(int)
                # from each start, the next BACKGROUNDS rows: the first readable one is taken
                choices = [range(start, min(start + BACKGROUNDS, len(cache))) for start in starts.tolist()]
                self._backgrounds = self._load_backgrounds(cache, choices)
            return self._backgrounds

    def use_backgrounds(self, rows: Sequence[int] | None) -> None:
        """Paste regions alone onto these dataset rows' photos (unreadable ones are left out); None: the default."""
        cache = self.cache
        with self._lock:
            self._backgrounds = None if rows is None else self._load_backgrounds(cache, [[row] for row in rows])

    def _load_backgrounds(self, cache: FeatureCache, choices: Sequence[Sequence[int]]) -> list[tuple[int, Image.Image]]:
        """The first readable photo of each choice of rows, at the model's input size."""
        source = DatasetSource.open(self.location)
        height, width = self.card.preprocessing.input_size
        chosen: dict[int, Image.Image] = {}
        for rows in choices:
            for row in (int(r) for r in rows):
                if row in chosen:
                    continue
                try:
                    photo = source.load(cache.paths[row], max_pixels=DEFAULT_MAX_PIXELS)
                except ImageError:
                    continue
                chosen[row] = photo.resize((width, height), Image.Resampling.BICUBIC)
                break
        return list(chosen.items())

    def _cache_row(self, path: Path) -> int | None:
        """The cache row of a dataset file, if it is in the cache."""
        if is_uri(self.location):
            return None
        # the path as written first (a dataset of symlinked files lists the links, not their targets), then resolved
        for as_given in (True, False):
            try:
                relative = (Path(os.path.normpath(path.absolute())).relative_to(os.path.normpath(self.data.absolute()))
                            if as_given else path.resolve().relative_to(self.data.resolve()))
            except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (pathlib before 3.13)
                continue
            row = self.cache.index_of(relative.as_posix())
            if row is not None:
                return row
        return None

    def grid_mask(self, image_size: tuple[int, int], mask: np.ndarray | str | Path | None = None,
                  box: tuple[float, float, float, float] | None = None) -> np.ndarray:
        """A region (boolean/float mask array, mask PNG, or box in pixels) as (G, G) weights."""
        if (mask is None) == (box is None):
            raise ValueError("Give exactly one of mask= or box=.")
        if box is not None:
            return box_to_grid(box, image_size, self.spec.grid)
        if isinstance(mask, (str, Path)):
            mask = load_mask(mask, image_size)
        return mask_to_grid(np.asarray(mask), self.spec.grid)

    def search(self, image: ImageSource, mask: np.ndarray | str | Path | None = None,
               box: tuple[float, float, float, float] | None = None, top_k: int = 20,
               exclude_query: bool = False, approximate: bool = False, candidates: int | None = None,
               scales: Sequence[float] = (1.0,), region_alone: bool = False) -> SearchResult:
        """Top-k images whose best window matches the region of ``image`` (mask or box, in its pixels).

        ``region_alone``: the region's features are those of the region without the photo around it
        (:mod:`vfs.features.region_alone`), so a late layer matches the object rather than its scene.

        ``scales``: the sizes, relative to the query's, at which the object may appear in a dataset
        image (e.g. :data:`~vfs.similarity.scales.MULTI_SCALES`); each needs its pyramid level indexed
        (``index(scales=...)``) and every match reports its scale (:mod:`vfs.similarity.scales`).

        ``approximate``: score exactly only the ``candidates`` images the cache's shortlist
        proposes (:attr:`shortlist`); the result is an :class:`~vfs.similarity.approximate.ApproximateSearchResult`.
        """
        features, size = (self.region_alone_features(image, mask=mask, box=box) if region_alone
                          else self.query_features(image))
        query = Query(features, self.grid_mask(size, mask=mask, box=box))
        exclude = None
        if exclude_query and not isinstance(image, (bytes, Image.Image)):
            row = self._cache_row(Path(image).expanduser())
            exclude = [row] if row is not None else None
        if tuple(scales) != (1.0,):
            if approximate:
                raise MaskError("Approximate search is for scale 1 only; search several scales exactly.")
            # nearest scales to 1 first: on equal scores the less rescaled match wins
            ordered = sorted(set(scales), key=lambda s: (abs(np.log(s)), s))
            levels = [(scale_level(s, self.card.preprocessing.input_size, self.grid), self.scale_level(s).cache)
                      for s in ordered]
            return search_scales(self.cache, levels, query, top_k, exclude, self.backend)
        if approximate:
            return self.shortlist.search(query, top_k, exclude, candidates, backend=self.backend)
        return search(self.cache, query, top_k=top_k, exclude=exclude, backend=self.backend)

    def scale_level(self, scale: float) -> FeatureSearch:
        """The image-pyramid level for objects ``scale`` times the query's size: this dataset, model and
        layer at another input size and grid (:mod:`vfs.similarity.scales`); ``index()`` builds it."""
        if scale == 1.0:
            return self
        with self._model_lock:
            if scale not in self._levels:
                level = scale_level(scale, self.card.preprocessing.input_size, self.grid)
                model = self.model.at_input_size(level.input_size)
                try:
                    model.layers  # noqa: B018 - a network that only takes its own input size fails here
                except Exception as exc:  # noqa: BLE001 - timm raises anything from assertions to shape errors
                    raise ModelError(f"{model.label} does not take {level.input_size[1]}×{level.input_size[0]} "
                                     f"inputs, so it cannot search at scale {scale} ({type(exc).__name__}).") from None
                self._levels[scale] = FeatureSearch(self.location, model, self.layer.name, level.grid,
                                                    cache_dir=self.cache_store or self.cache_dir, backend=self.backend)
            return self._levels[scale]

    def search_regions(self, regions: Sequence[QueryRegion], top_k: int = 20, exclude_query: bool = False,
                       negative_weight: float = 1.0, scales: Sequence[float] = (1.0,),
                       region_alone: bool = False) -> RegionSetResult:
        """Top-k images by the score of a region set: the mean of the positive regions' best-window cosines
        minus ``negative_weight`` times the largest of the negatives' (:mod:`vfs.similarity.region_set`).

        ``exclude_query`` leaves out every dataset image a region was drawn on. ``scales``: each region is
        searched at these sizes, as :meth:`search` does (its cosine in an image is its best over them).
        ``region_alone``: every region's features are its own, without its photo (as in :meth:`search`).
        """
        if not regions:
            raise MaskError("A region set needs at least one region.")
        started = time.perf_counter()
        searched, exclude = [], []
        for region in regions:
            searched.append(self.search(region.image, mask=region.mask, box=region.box, top_k=0, scales=scales,
                                        region_alone=region_alone))
            if exclude_query and not isinstance(region.image, (bytes, Image.Image)):
                row = self._cache_row(Path(region.image).expanduser())
                exclude += [row] if row is not None else []
        return combine_region_searches(self.cache, searched, [region.negative for region in regions], top_k,
                                       exclude or None, negative_weight, started)

    def build_shortlist(self) -> Shortlist:
        """Build the cache's shortlist for approximate search unless an up-to-date one exists; needs
        FAISS (``vfs[ann]``). Holds the cache's lock: a second build (another session, another process)
        waits, then finds the index built; an indexer waits too, the index describing the cache's shards."""
        from vfs.similarity.approximate import Shortlist

        cache = self.cache  # opened (and, when mirrored, pulled) before the lock, which pulling takes too
        with locked(self.cache_path):
            try:
                return self.shortlist
            except CacheError:  # none yet, out of date or damaged
                pass
            index = Shortlist.build(cache)
            with self._lock:
                self._shortlist = index
            return index

    @property
    def shortlist(self) -> Shortlist:
        """The approximate first stage of the cache (:mod:`vfs.similarity.approximate`, built by
        ``vfs index --ann``), opened once and again only when it is rewritten on disk; a
        :class:`~vfs.errors.VfsError` says why there is none (not built, out of date, damaged, no FAISS)."""
        from vfs.similarity.approximate import Shortlist

        cache = self.cache
        with self._lock:
            index = self._shortlist
            if index is None or index.cache is not cache or index.version != Shortlist.stored_version(cache):
                self._shortlist = None
                self._shortlist = Shortlist.open(cache)
            return self._shortlist


__all__ = ["FeatureSearch", "ImageError"]
