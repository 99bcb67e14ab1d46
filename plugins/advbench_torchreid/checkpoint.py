"""Strict loading of torchreid checkpoints into ``torchreid:<arch>`` victims.

torchreid's ``save_checkpoint`` writes ``model.pth.tar-<epoch>``: a dict with ``state_dict`` (keys
prefixed ``module.`` when the model was wrapped in ``DataParallel``), ``epoch``, ``rank1`` (a NumPy
scalar when written by torchreid's engine), ``optimizer`` and ``scheduler``. Released model-zoo files
are bare state dicts. torchreid's own ``load_pretrained_weights`` keeps whatever matches and silently
leaves the rest random; here every tensor of the network must be in the file with its shape, except
the identity classifier, whose size is the id count of the training set: it is loaded as it is, and
used for ``logits`` only when it has as many ids as the dataset the victim is evaluated on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advbench import statedict
from advbench.api import AdvbenchError, Victim
from advbench_torchreid.files import _numpy_globals, read_torch_file, state_dict_of  # noqa: F401  (importable from here)


def is_classifier(key: str) -> bool:
    """torchreid's identity heads: ``classifier``, PCB's ``classifier.<part>``, HACNN's ``classifier_*``."""
    return key.split(".", 1)[0].startswith("classifier")


def classifier_size(state: Mapping[str, Tensor]) -> int | None:
    """Id count of the checkpoint's classifier (rows of its first weight matrix), None if absent."""
    for key in sorted(state):
        if is_classifier(key) and key.endswith("weight") and state[key].ndim == 2:
            return int(state[key].shape[0])
    return None


def strict_load(module: torch.nn.Module, state: Mapping[str, Tensor], *, source: str, what: str) -> None:
    """Load ``state`` into ``module`` strictly, or raise one line listing every mismatch.

    Missing ``num_batches_tracked`` counters are tolerated; so is a classifier absent altogether.
    """
    head_absent = not any(is_classifier(k) for k in state)
    optional = [k for k in module.state_dict() if head_absent and is_classifier(k)]
    statedict.strict_load(
        module,
        state,
        source=source,
        what=what,
        who="torchreid",
        optional=optional,
        shape_hint="is it a checkpoint of another architecture?",
    )


def _describe(path: Path, meta: Mapping[str, Any]) -> str:
    parts = []
    if isinstance(meta.get("epoch"), int) and not isinstance(meta.get("epoch"), bool):
        parts.append(f"epoch {meta['epoch']}")
    with contextlib.suppress(KeyError, TypeError, ValueError):
        parts.append(f"rank-1 {float(meta['rank1']):.1%}")
    kind = "checkpoint" if meta else "state dict"
    return f"torchreid {kind} {path.name}" + (f" ({', '.join(parts)})" if parts else "")


def load_checkpoint(
    path: Path,
    arch: str,
    *,
    input_size: tuple[int, int],
    num_classes: int,
    metric: str = "euclidean",
    image_size: Any = "auto",
    pretrained: Any = False,
    **unknown: Any,
) -> Victim:
    """An eval-mode ``torchreid:<arch>`` victim with every network tensor from ``path``.

    ``image_size`` ``auto`` is torchreid's 256x128 (a checkpoint does not record its size; HACNN:
    160x64). ``pretrained`` is ignored: the checkpoint holds every weight. ``num_classes`` is the
    dataset's train-id count, compared with the checkpoint's classifier (see the module docstring).
    """
    from advbench_torchreid.model import TORCHREID_SIZE, TorchreidVictim

    del pretrained
    if unknown:
        raise AdvbenchError(
            f"torchreid:{arch}: unknown parameter(s) {', '.join(sorted(unknown))}; "
            "torchreid takes metric, image_size, pretrained"
        )
    state, meta = state_dict_of(read_torch_file(path), path)
    head = classifier_size(state)
    victim = TorchreidVictim(
        arch,
        num_classes=num_classes,
        input_size=input_size,
        metric=metric,
        image_size=image_size,
        head_classes=head if head is not None else 0,
        default_size=TORCHREID_SIZE,
    )
    strict_load(victim.model, state, source=str(path), what=f"torchreid {arch}")
    if head is None:
        use = "absent from the checkpoint: no logits"
    elif head == num_classes:
        use = f"{head} ids, as the dataset: used for logits"
    else:
        use = f"{head} ids, dataset has {num_classes}: not used"
    if not victim.num_classes:
        victim.no_head = f"torchreid:{arch} from {path.name}: its classifier is {use}"
    size = victim.image_size
    resized = "" if size == victim.input_size else f" (inputs resized from {input_size[0]}x{input_size[1]})"
    victim.info = {
        "checkpoint": _describe(path, meta),
        "classifier": use,
        "image_size": f"{size[0]}x{size[1]}{resized}",
        "metric": metric,
    }
    return victim.eval()
