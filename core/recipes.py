"""Each architecture's training recipe: the defaults of the CLI and the Train page, and how the
shipped weights were made. A recipe is a TrainConfig; flags and widgets override single fields.
"""

from __future__ import annotations

from dataclasses import replace

from core.models import get_card
from core.training import TrainConfig

# Networks with batch norm take SGD with a high one-cycle peak; the rest train best with AdamW.
_SGD = dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
_ADAMW = dict(optimizer="adamw", lr=2e-3, weight_decay=0.05)

_RECIPES: dict[str, dict] = {
    "mlp": dict(_ADAMW, epochs=15, lr=1e-3),
    "lenet5": dict(_ADAMW, epochs=15),
    "lenet5-relu": dict(_ADAMW, epochs=15),
    "simple-cnn": dict(_ADAMW, epochs=12),
    "alexnet": dict(_ADAMW, epochs=12, lr=1e-3),
    "zfnet": dict(_ADAMW, epochs=12, lr=1e-3),
    "vgg11": dict(_SGD, epochs=12),
    "vgg19": dict(_SGD, epochs=12),
    "googlenet": dict(_SGD, epochs=12),
    "resnet18": dict(_SGD, epochs=12),
    "mobilenet": dict(_SGD, epochs=12),
}


def recipe(arch: str, dataset: str = "mnist") -> TrainConfig:
    """The recipe of one architecture on one dataset (both datasets share it)."""
    get_card(arch)
    # One-cycle needs its whole schedule to anneal, so early stopping is off; the epoch with the
    # best validation loss is still the one kept.
    return replace(TrainConfig(), arch=arch, dataset=dataset, schedule="onecycle", batch_size=128,
                   label_smoothing=0.1, patience=0, **_RECIPES[arch])
