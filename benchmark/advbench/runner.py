"""Plan the grid, get every victim ready, run the cells, hand finished records to the store.

A cell is (dataset, attack with params and eps, source victim). Only the queries are perturbed
(the gallery stays clean); the adversarial queries crafted on the source victim are evaluated on
every victim of the run: the source itself (white-box row) and each other one (transfer rows).
Gallery and clean query features of a (victim, dataset) are computed once and cached. Each cell's
key hashes everything its numbers depend on, so a rerun skips finished cells without loading a
single image, and a plugin that raises fails its own cell only.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import advbench
from advbench import checkpoints
from advbench.api import AdvbenchError, Attack, FeatureBank, ImageSplit, ReidDataset, Victim
from advbench.data.images import load_split
from advbench.features import extract, extract_cached
from advbench.metrics.perceptual import perceptual_report
from advbench.metrics.reid import ReidScores, distance_matrix, evaluate_cuhk03_classic, evaluate_features
from advbench.plugins import Registry
from advbench.store import ResultStore
from advbench.training import train_victim
from advbench.utils import file_hash, resolve_device, seed_everything, stable_hash

PROTOCOL_VERSION = "1"
PROTOCOLS = ("market", "cuhk03-classic")


def default_cache_dir() -> Path:
    return Path(os.environ.get("ADVBENCH_CACHE", Path.home() / ".cache" / "advbench")).expanduser()


def default_data_root() -> Path | None:
    root = os.environ.get("ADVBENCH_DATA")
    return Path(root).expanduser() if root else None


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``advbench run`` depends on (the CLI fills it from its flags)."""

    datasets: str = "default"
    victims: str = "default"
    attacks: str = "default"
    eps: tuple[float, ...] = (16.0,)
    out: Path = Path("leaderboards")
    cache_dir: Path = field(default_factory=default_cache_dir)
    data_root: Path | None = field(default_factory=default_data_root)
    device: str = "auto"
    seed: int = 0
    victim_weights: Mapping[str, Path] = field(default_factory=dict)
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dataset_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    victim_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train_steps: int | None = None
    train_missing: bool = False
    fit_on: str | None = None
    input_size: tuple[int, int] | None = None
    batch_size: int = 64
    quantize: bool = True
    protocol: str = "market"
    progress: bool = True


@dataclass
class ReadyVictim:
    """A victim loaded for one dataset, with the identity of its weights."""

    name: str
    model: Victim
    checkpoint: str
    weights_id: str
    origin: str  # "cache", "trained", "user"


@dataclass
class DatasetState:
    """What the cells of one dataset share: its images and each victim's clean features."""

    name: str
    data: ReidDataset
    input_size: tuple[int, int]
    query: ImageSplit | None = None
    gallery: ImageSplit | None = None
    galleries: dict[str, FeatureBank] = field(default_factory=dict)
    clean_query: dict[str, Tensor] = field(default_factory=dict)
    clean_scores: dict[str, ReidScores] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    dataset: str
    attack: str
    params: tuple[tuple[str, Any], ...]
    eps: float
    source: str
    fit_dataset: str | None
    key: str


@dataclass
class RunSummary:
    records: list[dict[str, Any]]
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def provenance(device: torch.device) -> dict[str, Any]:
    """Where a record's numbers came from: versions, device, commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "advbench_version": advbench.__version__,
        "git_commit": commit,
        "torch_version": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()})",
        "python": sys.version.split()[0],
    }


class Runner:
    """Runs one :class:`RunConfig` against a :class:`Registry`."""

    def __init__(self, config: RunConfig, registry: Registry, log: Any = None) -> None:
        self.config = config
        self.registry = registry
        self.device = resolve_device(config.device)
        if config.protocol not in PROTOCOLS:
            raise AdvbenchError(
                f"unknown evaluation protocol {config.protocol!r}; choose {', '.join(PROTOCOLS)}"
            )
        self.store = ResultStore(Path(config.out) / ".store")
        self.cache = Path(config.cache_dir)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._datasets: dict[str, ReidDataset] = {}
        self._victims: dict[tuple[str, str], ReadyVictim] = {}
        self._train_splits: dict[tuple[str, tuple[int, int]], ImageSplit] = {}
        self._provenance = provenance(self.device)

    # ------------------------------------------------------------------------------ resolution
    def dataset(self, name: str) -> ReidDataset:
        if name not in self._datasets:
            entry, _ = self.registry.get("dataset", name)
            params = {**entry.spec.defaults, **self.config.dataset_params.get(name, {})}
            self._datasets[name] = entry.spec.load(self.config.data_root, self.cache / "datasets", **params)
        return self._datasets[name]

    def input_size(self, name: str) -> tuple[int, int]:
        if self.config.input_size:
            return self.config.input_size
        entry, _ = self.registry.get("dataset", name)
        size = self.dataset(name).info.get("input_size") or entry.spec.input_size
        return (int(size[0]), int(size[1]))

    def train_split(self, dataset: str) -> ImageSplit:
        size = self.input_size(dataset)
        if (dataset, size) not in self._train_splits:
            data = self.dataset(dataset)
            self._train_splits[(dataset, size)] = load_split(
                data.train,
                size,
                cache_dir=self.cache,
                desc=f"{dataset} train images",
                progress=self.config.progress,
            )
        return self._train_splits[(dataset, size)]

    def _victim_setup(self, name: str) -> tuple[Any, dict[str, Any]]:
        entry, variant = self.registry.get("victim", name)
        params = {**entry.spec.defaults, **self.config.victim_params.get(name, {})}
        if variant is not None:
            params["variant"] = variant
        recipe = entry.spec.recipe
        if self.config.train_steps is not None:
            recipe = dataclasses.replace(recipe, steps=self.config.train_steps)
        return entry, {"params": params, "recipe": recipe}

    def victim_checkpoint(self, name: str, dataset: str) -> tuple[Path, str]:
        """Where the trained victim for ``dataset`` is (or will be) cached, and its key."""
        entry, setup = self._victim_setup(name)
        data = self.dataset(dataset)
        key = checkpoints.victim_key(
            name,
            setup["params"],
            entry.spec.version,
            data.fingerprint,
            self.input_size(dataset),
            setup["recipe"],
            self.config.seed,
        )
        return checkpoints.cached_checkpoint(self.cache, name, dataset, key), key

    def victim_available(self, name: str, dataset: str) -> bool:
        """Whether the victim has weights for ``dataset`` without training anything new."""
        return name in self.config.victim_weights or self.victim_checkpoint(name, dataset)[0].exists()

    def victim(self, name: str, dataset: str) -> ReadyVictim:
        """The victim for ``dataset``: user weights, else the cache, else trained (when allowed)."""
        if (name, dataset) in self._victims:
            return self._victims[(name, dataset)]
        entry, setup = self._victim_setup(name)
        size = self.input_size(dataset)
        if name in self.config.victim_weights:
            path = Path(self.config.victim_weights[name])
            blob = checkpoints.read_checkpoint(path)
            if blob is not None:
                model = checkpoints.build_from_checkpoint(blob, self.registry, path)
            elif entry.spec.load is not None:
                params = {k: v for k, v in setup["params"].items() if k != "variant"}
                model = entry.spec.load(path, input_size=size, **params)
            else:
                raise AdvbenchError(
                    f"{path} is not an advbench checkpoint and victim {name!r} has no loader for other formats"
                )
            ready = ReadyVictim(name, model, str(path), file_hash(path), "user")
        else:
            path, key = self.victim_checkpoint(name, dataset)
            if path.exists():
                blob = checkpoints.read_checkpoint(path)
                if blob is None:
                    raise AdvbenchError(f"cached checkpoint {path} is not an advbench checkpoint; delete it")
                ready = ReadyVictim(
                    name,
                    checkpoints.build_from_checkpoint(blob, self.registry, path),
                    str(path),
                    key,
                    "cache",
                )
            else:
                embedded = self.registry.get("dataset", dataset)[0].spec.embedded
                if not (embedded or self.config.train_missing):
                    raise AdvbenchError(
                        f"no checkpoint of victim {name!r} for dataset {dataset!r}: train one with "
                        f"`advbench train --victim {name} --dataset {dataset}`, pass --train-missing, "
                        f"or give --victim-weights {name}=PATH"
                    )
                ready = ReadyVictim(name, self.train(name, dataset, path), str(path), key, "trained")
        ready.model.to(self.device).eval().requires_grad_(False)
        self._victims[(name, dataset)] = ready
        return ready

    def train(self, name: str, dataset: str, path: Path) -> Victim:
        """Train victim ``name`` on ``dataset``'s train split and save it at ``path``."""
        entry, setup = self._victim_setup(name)
        data = self.dataset(dataset)
        with torch.random.fork_rng(devices=[]):  # the initial weights are part of the recipe: seed them
            torch.manual_seed(self.config.seed)
            model = entry.spec.build(
                num_classes=data.num_train_pids, input_size=self.input_size(dataset), **setup["params"]
            )
        train = self.train_split(dataset)
        self.log(
            f"training {name} on {dataset} ({setup['recipe'].steps} steps, {data.num_train_pids} ids) -> {path}"
        )
        stats = train_victim(
            model,
            train,
            setup["recipe"],
            device=self.device,
            seed=self.config.seed,
            progress=self.config.progress,
            desc=f"train {name}",
        )
        params = {k: v for k, v in setup["params"].items() if k != "variant"}
        stored_name = name
        checkpoints.save_checkpoint(
            path,
            model,
            name=stored_name,
            params=params,
            dataset=dataset,
            dataset_fingerprint=data.fingerprint,
            recipe=setup["recipe"],
            seed=self.config.seed,
            train_stats=stats,
        )
        self.log(f"trained {name} in {stats['train_seconds']:.0f} s (final loss {stats['final_loss']:.3f})")
        return model

    # ------------------------------------------------------------------------------- planning
    def select_victims(self, dataset: str) -> list[str]:
        """Victims of the run for ``dataset``; with ``all``, non-default victims without weights are skipped."""
        names = self.registry.select("victim", self.config.victims)
        if "all" not in self.config.victims.split(","):
            return names
        kept = []
        for name in names:
            entry, _ = self.registry.get("victim", name)
            if entry.spec.default or self.victim_available(name, dataset):
                kept.append(name)
            else:
                self.log(
                    f"note: victim {name} has no weights for {dataset} and is not a default victim; skipped "
                    f"(add it with `advbench train --victim {name} --dataset {dataset}` or --victim-weights)"
                )
        return kept

    def plan(self, dataset: str, victims: list[str], weights: dict[str, str]) -> list[Cell]:
        data = self.dataset(dataset)
        fit_dataset = self.config.fit_on
        fit_fp = self.dataset(fit_dataset).fingerprint if fit_dataset else None
        targets = sorted((v, weights[v]) for v in victims)
        cells = []
        for attack in self.registry.select("attack", self.config.attacks):
            entry, variant = self.registry.get("attack", attack)
            params = {**entry.spec.defaults, **self.config.attack_params.get(attack, {})}
            # --fit-on concerns learning attacks only: the others keep their plain cells and keys
            learns = fit_dataset is not None and self._learns(entry, variant, params)
            cell_fit, cell_fit_fp = (fit_dataset, fit_fp) if learns else (None, None)
            for eps in self.config.eps:
                for source in victims:
                    key = stable_hash(
                        PROTOCOL_VERSION,
                        dataset,
                        data.fingerprint,
                        attack,
                        variant,
                        entry.spec.version,
                        params,
                        eps,
                        source,
                        weights[source],
                        cell_fit,
                        cell_fit_fp,
                        targets,
                        self.config.seed,
                        self.config.quantize,
                        self.config.batch_size,
                        # only a non-default protocol enters the key, so stores written before
                        # the option existed stay valid
                        *([self.config.protocol] if self.config.protocol != "market" else []),
                        length=24,
                    )
                    cells.append(
                        Cell(
                            dataset,
                            attack,
                            tuple(sorted(params.items())),
                            float(eps),
                            source,
                            cell_fit,
                            key,
                        )
                    )
        return cells

    @staticmethod
    def _learns(entry: Any, variant: str | None, params: dict[str, Any]) -> bool:
        """Whether the attack fits on a train split; an attack that cannot be built counts as learning
        (its cell fails later with the real error)."""
        try:
            attack = entry.spec.build(**params, **({"variant": variant} if variant is not None else {}))
        except Exception:
            return True
        return attack.needs_fit

    # -------------------------------------------------------------------------------- running
    def run(self) -> RunSummary:
        summary = RunSummary(records=[])
        for dataset in self.registry.select("dataset", self.config.datasets):
            self._run_dataset(dataset, summary)
        return summary

    def _weights_ids(self, dataset: str, victims: list[str]) -> dict[str, str]:
        """Identity of each victim's weights, training nothing when every cell is already done."""
        out = {}
        for name in victims:
            if name in self.config.victim_weights:
                out[name] = file_hash(self.config.victim_weights[name])
            else:
                out[name] = self.victim_checkpoint(name, dataset)[1]
        return out

    def _run_dataset(self, dataset: str, summary: RunSummary) -> None:
        victims = self.select_victims(dataset)
        ready: list[str] = []
        for name in victims:
            if name in self.config.victim_weights or self.victim_checkpoint(name, dataset)[0].exists():
                ready.append(name)
                continue
            try:
                self.victim(name, dataset)
                ready.append(name)
            except AdvbenchError as exc:
                summary.failed.append((f"{dataset}/{name}", str(exc)))
                self.log(f"victim {name} unavailable on {dataset}: {exc}")
        cells = self.plan(dataset, ready, self._weights_ids(dataset, ready))
        pending = [c for c in cells if not self.store.is_done(c.key)]
        summary.skipped += len(cells) - len(pending)
        if pending:
            self.log(
                f"{dataset}: {len(cells)} cells, {len(cells) - len(pending)} already done, {len(pending)} to run"
            )
            state = self._prepare(dataset, ready)
            for cell in pending:
                self._run_cell(cell, state, ready, summary)
        else:
            self.log(f"{dataset}: all {len(cells)} cells already done")
        for cell in cells:
            record = self.store.get(cell.key)
            if record is not None and record.get("status") == "ok":
                summary.records.append(record)

    def _prepare(self, dataset: str, victims: list[str]) -> DatasetState:
        data = self.dataset(dataset)
        size = self.input_size(dataset)
        state = DatasetState(dataset, data, size)
        progress = self.config.progress
        state.query = load_split(
            data.query, size, cache_dir=self.cache, desc=f"{dataset} query images", progress=progress
        )
        state.gallery = load_split(
            data.gallery, size, cache_dir=self.cache, desc=f"{dataset} gallery images", progress=progress
        )
        for name in victims:
            victim = self.victim(name, dataset)
            feats = {}
            for split_name, split in (("query", state.query), ("gallery", state.gallery)):
                cache_file = (
                    self.cache
                    / "features"
                    / f"{stable_hash(victim.weights_id, data.fingerprint, split_name, list(size))}.pt"
                )
                feats[split_name] = extract_cached(
                    victim.model,
                    split,
                    cache_file=cache_file,
                    device=self.device,
                    batch_size=self.config.batch_size * 2,
                    progress=progress,
                    desc=f"{name} {split_name} features",
                )
            state.galleries[name] = FeatureBank(feats["gallery"], state.gallery.pids, state.gallery.camids)
            state.clean_query[name] = feats["query"]
            state.clean_scores[name] = self._score(victim.model, feats["query"], state, name)
            self.log(
                f"{dataset} {name}: clean mAP {100 * state.clean_scores[name].mAP:.1f}, "
                f"rank-1 {100 * state.clean_scores[name].rank(1):.1f}"
            )
        return state

    def _score(self, victim: Victim, query_feats: Tensor, state: DatasetState, name: str) -> ReidScores:
        """Market-1501 protocol by default; CUHK03's classic single-gallery-shot CMC on request."""
        bank = state.galleries[name]
        labels = (state.query.pids, bank.pids, state.query.camids, bank.camids)
        if self.config.protocol == "cuhk03-classic":
            distmat = distance_matrix(query_feats, bank.features, victim.distance)
            return evaluate_cuhk03_classic(distmat, *labels, seed=self.config.seed)
        return evaluate_features(query_feats, bank.features, *labels, distance=victim.distance)

    def _run_cell(self, cell: Cell, state: DatasetState, victims: list[str], summary: RunSummary) -> None:
        label = f"{cell.dataset} | {cell.attack} eps={cell.eps:g} | source {cell.source}"
        try:
            record = self._compute_cell(cell, state, victims)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.store.put(cell.key, {"status": "failed", "cell": self._cell_fields(cell), "error": message})
            summary.failed.append((label, message))
            self.log(f"FAILED {label}: {message}")
            return
        self.store.put(cell.key, record)
        summary.done += 1
        white = next(r for r in record["rows"] if r["setting"] == "whitebox")
        self.log(
            f"done {label}: white-box mAP {white['clean_mAP']:.1f} -> {white['adv_mAP']:.1f}, "
            f"SSIM {record['perceptual']['ssim']:.3f}, {record['sec_per_image']:.4f} s/image"
        )

    def _cell_fields(self, cell: Cell) -> dict[str, Any]:
        return {
            "dataset": cell.dataset,
            "attack": cell.attack,
            "attack_params": dict(cell.params),
            "eps": cell.eps,
            "source_victim": cell.source,
            "fit_dataset": cell.fit_dataset or cell.dataset,
            "key": cell.key,
        }

    def _build_attack(self, cell: Cell) -> Attack:
        entry, variant = self.registry.get("attack", cell.attack)
        params = dict(cell.params)
        if variant is not None:
            params["variant"] = variant
        return entry.spec.build(eps=cell.eps, **params)

    def _compute_cell(self, cell: Cell, state: DatasetState, victims: list[str]) -> dict[str, Any]:
        source = self.victim(cell.source, cell.dataset)
        attack = self._build_attack(cell)
        seed = int(cell.key[:8], 16) ^ self.config.seed
        fit_seconds = 0.0
        if attack.needs_fit:
            fit_dataset = cell.fit_dataset or cell.dataset
            fit_victim = self.victim(cell.source, fit_dataset)
            fit_key = stable_hash(
                fit_victim.weights_id,
                self.dataset(fit_dataset).fingerprint,
                cell.attack,
                dict(cell.params),
                cell.eps,
                self.config.seed,
            )
            seed_everything(seed)
            start = time.perf_counter()
            attack.fit(
                fit_victim.model,
                self.train_split(fit_dataset),
                cache_dir=self.cache / "attacks" / cell.attack,
                key=fit_key,
                device=self.device,
                progress=self.config.progress,
            )
            fit_seconds = time.perf_counter() - start
        adv, seconds = self._craft(attack, source, state, seed)
        clean = state.query.images
        adv_split = ImageSplit(adv, state.query.pids, state.query.camids)
        report = perceptual_report(clean.float().div(255), adv_split.batch(slice(None)))
        rows = []
        white_drop = None
        for target in sorted(victims, key=lambda v: v != cell.source):
            model = self.victim(target, cell.dataset).model
            adv_feats = extract(
                model, adv_split, device=self.device, batch_size=self.config.batch_size * 2, progress=False
            )
            adv_scores = self._score(model, adv_feats, state, target)
            clean_scores = state.clean_scores[target]
            drop = 100 * (clean_scores.mAP - adv_scores.mAP)
            if target == cell.source:
                white_drop = drop
            rows.append(
                {
                    "target_victim": target,
                    "setting": "whitebox" if target == cell.source else "transfer",
                    "clean_mAP": 100 * clean_scores.mAP,
                    "adv_mAP": 100 * adv_scores.mAP,
                    "mAP_drop": drop,
                    "rel_mAP_drop": drop / (100 * clean_scores.mAP) if clean_scores.mAP > 0 else float("nan"),
                    "transfer_rate": drop / white_drop if white_drop else float("nan"),
                    **{f"clean_rank{k}": 100 * clean_scores.rank(k) for k in (1, 5, 10)},
                    **{f"adv_rank{k}": 100 * adv_scores.rank(k) for k in (1, 5, 10)},
                    "clean_mINP": 100 * clean_scores.mINP,
                    "adv_mINP": 100 * adv_scores.mINP,
                }
            )
        return {
            "status": "ok",
            "cell": self._cell_fields(cell),
            "rows": rows,
            "perceptual": dataclasses.asdict(report),
            "sec_per_image": seconds / len(clean),
            "fit_seconds": fit_seconds,
            "n_query": len(state.query),
            "n_gallery": len(state.gallery),
            "input_size": list(state.input_size),
            "seed": self.config.seed,
            "quantized": self.config.quantize,
            "protocol": self.config.protocol,
            "source_checkpoint": source.checkpoint,
            "source_weights_id": source.weights_id,
            "provenance": self._provenance,
        }

    def _craft(
        self, attack: Attack, source: ReadyVictim, state: DatasetState, seed: int
    ) -> tuple[Tensor, float]:
        """Adversarial queries (uint8), checked against the budget, and the seconds spent crafting."""
        seed_everything(seed)
        eps = attack.eps / 255.0
        query = state.query
        out = torch.empty(query.images.shape, dtype=torch.uint8 if self.config.quantize else torch.float32)
        elapsed = 0.0
        bs = self.config.batch_size
        for start in range(0, len(query), bs):
            sl = slice(start, start + bs)
            images = query.batch(sl, self.device)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            adv = attack.perturb(
                source.model,
                images,
                query.pids[sl].to(self.device),
                query.camids[sl].to(self.device),
                gallery=state.galleries[source.name],
            )
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            elapsed += time.perf_counter() - t0
            if not torch.isfinite(adv).all():
                raise AdvbenchError(f"attack {attack.name} returned NaN/Inf pixels")
            adv = adv.detach().clamp(0, 1)
            if self.config.quantize:
                adv = adv.mul(255).round().div(255)
            slack = 0.5 / 255 if self.config.quantize and attack.eps != int(attack.eps) else 0.0
            excess = float((adv - images).abs().max()) - eps - slack
            if excess > 1e-5:
                raise AdvbenchError(
                    f"attack {attack.name} exceeded its L∞ budget of {attack.eps:g}/255 by {excess * 255:.2f}/255"
                )
            out[sl] = (adv.mul(255).round().to(torch.uint8) if self.config.quantize else adv).cpu()
        return out, elapsed
