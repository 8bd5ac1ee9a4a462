"""A network and its recipe as one standalone Python file: plain PyTorch and torchvision, nothing of this lab.

    >>> from core.recipes import recipe
    >>> source = script(recipe("lenet5-relu"))
    >>> "class Net(nn.Module)" in source and "import core" not in source
    True

The network is written layer by layer from its spec (``core.spec``): a built network's own, or the template of
a zoo architecture, which builds exactly the zoo's network. The file trains with the recipe's optimizer,
schedule, label smoothing and augmentation (as torchvision transforms) and prints the test accuracy after every
epoch: what a student runs at home with ``python mynet.py``.
"""

from __future__ import annotations

import inspect
import pprint

from core import data, spec
from core.models import SPEC_PREFIX, get_card, googlenet
from core.training import AUX_LOSS_WEIGHT, TrainConfig


def network_spec(arch: str) -> spec.Spec:
    """The spec of an architecture: a built network's, or the zoo architecture's template."""
    if arch.startswith(SPEC_PREFIX):
        return spec.stored_spec(arch)
    get_card(arch)  # says so if it is unknown
    return spec.parse(spec.TEMPLATES[arch])


def _layer_code(layer: spec.Layer, shape: spec.Shape, classes: int) -> str:
    s, channels = layer.settings, shape[0]
    match layer.type:
        case "conv":
            extra = (f", groups={s['groups']}" if s["groups"] != 1 else "") + ("" if s["bias"] else ", bias=False")
            return (f"nn.Conv2d({channels}, {s['channels']}, kernel_size={s['kernel']}, stride={s['stride']}, "
                    f"padding={s['padding']}{extra})")
        case "maxpool" | "avgpool":
            name = "MaxPool2d" if layer.type == "maxpool" else "AvgPool2d"
            ceil = ", ceil_mode=True" if s["ceil"] else ""
            return f"nn.{name}({s['kernel']}, stride={s['stride'] or s['kernel']}, padding={s['padding']}{ceil})"
        case "batchnorm":
            return f"nn.BatchNorm{2 if len(shape) == 3 else 1}d({channels})"
        case "relu":
            return "nn.ReLU(inplace=True)"
        case "tanh" | "sigmoid" | "gelu":
            return {"tanh": "nn.Tanh()", "sigmoid": "nn.Sigmoid()", "gelu": "nn.GELU()"}[layer.type]
        case "dropout":
            return f"nn.Dropout({s['p']})"
        case "lrn":
            return f"nn.LocalResponseNorm({s['size']}, alpha={s['alpha']}, beta={s['beta']}, k={s['k']})"
        case "flatten":
            return "nn.Flatten()"
        case "gap":
            return "nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())"
        case "linear":
            return f"nn.Linear({channels}, {s['units']}{'' if s['bias'] else ', bias=False'})"
        case "residual":
            return f"Residual({channels}, {s['channels']}, stride={s['stride']})"
        case "inception":
            return f"Inception({channels}, " + ", ".join(str(s[branch]) for branch in spec.BRANCHES) + ")"
        case "aux":
            return (f"InceptionAux({channels}, {classes}, conv_channels={s['channels']}, hidden={s['units']}, "
                    f"dropout={s['p']})")
    raise AssertionError(layer.type)


def _blocks(network: spec.Spec) -> str:
    """The source of the lab's blocks that the network uses, as the lab defines them."""
    kinds = {layer.type for layer in network.layers}
    blocks = [spec.Residual] if "residual" in kinds else []
    blocks += [googlenet.BasicConv2d, googlenet.Inception] if "inception" in kinds else []
    source = "".join(inspect.getsource(block) + "\n\n" for block in blocks)
    if "aux" in kinds:
        if "inception" not in kinds:
            source += inspect.getsource(googlenet.BasicConv2d) + "\n\n"
        source += ("Dropout = nn.Dropout  # the lab's own draws its masks from a run's generator; else the same\n"
                   "\n\n" + inspect.getsource(googlenet.InceptionAux) + "\n\n")
    return source


def network_code(network: spec.Spec, *, num_classes: int = spec.NUM_CLASSES) -> str:
    """The ``Net`` class (and the lab's blocks it uses) as Python source."""
    shapes = [spec.INPUT, *spec.check(network, num_classes=num_classes)]
    code = spec.parted(network, [_layer_code(layer, shape, num_classes)
                                 for layer, shape in zip(network.layers, shapes, strict=False)])
    features, heads, classifier = code["features"], code["aux"], code["classifier"]
    taps = tuple(place.tap for place in spec.places(network) if place.part == "aux")

    def listed(opening: str, part: list[str], closing: str = ")") -> str:
        return opening + "\n" + "".join(f"{' ' * 12}{line},\n" for line in part) + " " * 8 + closing

    lines = ["class Net(nn.Module):",
             f'    """{network.name}: {len(network.layers)} layers, features then classifier."""',
             "",
             "    def __init__(self):",
             "        super().__init__()",
             f"        self.features = {listed('nn.Sequential(', features)}"]
    if heads:
        lines += ["        # auxiliary classifiers, in training only: head i hears features[taps[i]] (-1: the image)",
                  f"        self.aux = {listed('nn.ModuleList([', heads, '])')}",
                  f"        self.taps = {taps}"]
    lines += [f"        self.classifier = {listed('nn.Sequential(', classifier)}", _INIT, _FORWARD_WITH_AUX if heads
              else _FORWARD]
    return _blocks(network) + "\n".join(lines)


_INIT = """\
        # as the lab starts a built network: He et al.'s weights, a small read-out
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        read_out = [m for m in self.modules() if isinstance(m, nn.Linear)]
        if read_out:
            nn.init.normal_(read_out[-1].weight, std=0.01)
"""
_FORWARD = """\
    def forward(self, x):
        return self.classifier(self.features(x))
"""
_FORWARD_WITH_AUX = """\
    def forward(self, x):
        if not self.training:
            return self.classifier(self.features(x))
        # in training, the heads hear the features on the way; their losses join the scores' (see train_loss)
        extras = [head(x) for head, tap in zip(self.aux, self.taps) if tap < 0]
        for index, feature in enumerate(self.features):
            x = feature(x)
            extras += [head(x) for head, tap in zip(self.aux, self.taps) if tap == index]
        return (self.classifier(x), *extras)
"""


_TEMPLATE = '''\
"""{title} on {dataset}, exported from MNIST CNN Lab: plain PyTorch and torchvision, nothing else.

    python {file}            # downloads {dataset} into ./data, trains, prints each epoch's test accuracy
    python {file} --data DIR --epochs 2 --limit 5000

The recipe is the lab's: {summary}.
The lab keeps the epoch with the best validation accuracy; this script keeps it simple and trains on every
training image, reporting the test set after each epoch.
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

RECIPE = {recipe}
MEAN, STD = {mean}, {std}  # the training images' own, for normalisation


{network}

def loaders(root, batch_size, limit, workers):
    """The training images (augmented as the recipe says) and the test images, normalised."""
    augment = []
    if RECIPE["augment"]:
        warp = dict(degrees=10, scale=(0.9, 1.1)) if RECIPE["warp"] else dict(degrees=0)
        augment.append(transforms.RandomAffine(translate=(2 / 28, 2 / 28), **warp))  # shifts of up to 2 pixels
        if {mirror}:  # clothes mirror; digits do not
            augment.append(transforms.RandomHorizontalFlip())
    normalise = [transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))]
    erase = [transforms.RandomErasing(p=RECIPE["erase"], scale=(0.02, 0.4), ratio=(0.3, 3.3), value="random")]
    train_transform = transforms.Compose(augment + normalise + (erase if RECIPE["augment"] and RECIPE["erase"] else []))
    train = datasets.{torchvision}(root, train=True, download=True, transform=train_transform)
    test = datasets.{torchvision}(root, train=False, download=True, transform=transforms.Compose(normalise))
    if limit:
        train = Subset(train, range(min(limit, len(train))))
    return (DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=True),
            DataLoader(test, batch_size=1000, num_workers=workers))


{train_loss}


def make_optimizer(model):
    common = dict(lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    if RECIPE["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), momentum=RECIPE["momentum"],
                               nesterov=RECIPE["nesterov"] and RECIPE["momentum"] > 0, **common)
    if RECIPE["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), **common)
    return torch.optim.AdamW(model.parameters(), **common)


def make_schedule(optimizer, steps):
    """The learning rate, stepped after every batch."""
    if RECIPE["schedule"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=RECIPE["lr"], total_steps=steps)
    if RECIPE["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def test_accuracy(model, test, device):
    model.eval()
    right = 0
    with torch.no_grad():
        for images, labels in test:
            right += (model(images.to(device)).argmax(1) == labels.to(device)).sum().item()
    model.train()
    return 100 * right / len(test.dataset)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="where {dataset} is, or is downloaded to (default ./data)")
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--batch-size", type=int, default=RECIPE["batch_size"])
    parser.add_argument("--limit", type=int, help="train on the first N training images only")
    parser.add_argument("--log-every", type=int, default=50, help="batches between loss lines")
    parser.add_argument("--workers", type=int, default=2, help="processes that prepare the batches")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(RECIPE["seed"])
    device = torch.device(args.device)
    model = Net().to(device)
    print(f"parameters: {{sum(p.numel() for p in model.parameters()):,}}")
    train, test = loaders(args.data, args.batch_size, args.limit, args.workers)
    optimizer = make_optimizer(model)
    schedule = make_schedule(optimizer, args.epochs * len(train))
    step = 0
    for epoch in range(1, args.epochs + 1):
        start, total, seen = time.perf_counter(), 0.0, 0
        for images, labels in train:
            images, labels = images.to(device), labels.to(device)
            loss = train_loss(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            total, seen = total + loss.item() * len(labels), seen + len(labels)
            if step % args.log_every == 0:
                print(f"step {{step}}: loss {{loss.item():.4f}}", flush=True)
        accuracy = test_accuracy(model, test, device)
        print(f"epoch {{epoch}}/{{args.epochs}}: train loss {{total / max(seen, 1):.4f}}, "
              f"test accuracy {{accuracy:.2f}}%, {{time.perf_counter() - start:.0f}} s", flush=True)


if __name__ == "__main__":
    main()
'''


_LOSS = '''\
def train_loss(scores, labels):
    return F.cross_entropy(scores, labels, label_smoothing=RECIPE["label_smoothing"])
'''
_LOSS_WITH_AUX = f'''\
AUX_WEIGHT = {AUX_LOSS_WEIGHT}  # as in GoogLeNet's paper


def train_loss(outputs, labels):
    """The scores' cross-entropy, plus the auxiliary heads' at AUX_WEIGHT each."""
    scores, *extras = outputs
    loss = F.cross_entropy(scores, labels, label_smoothing=RECIPE["label_smoothing"])
    for extra in extras:
        loss = loss + AUX_WEIGHT * F.cross_entropy(extra, labels, label_smoothing=RECIPE["label_smoothing"])
    return loss
'''


def script(config: TrainConfig, *, file: str = "mynet.py") -> str:
    """The standalone training script of ``config.arch`` with ``config``'s recipe, as Python source."""
    config.validate()
    network = network_spec(config.arch)
    dataset = data.get_spec(config.dataset)
    recipe = {key: getattr(config, key) for key in ("epochs", "batch_size", "lr", "optimizer", "momentum", "nesterov",
                                                    "weight_decay", "schedule", "label_smoothing", "augment", "warp",
                                                    "erase", "seed")}
    summary = (f"{config.optimizer}, learning rate {config.lr:g}, {config.schedule} schedule, "
               f"batch {config.batch_size}, {config.epochs} epochs")
    return _TEMPLATE.format(
        title=get_card(config.arch).title, dataset=dataset.title, file=file, summary=summary,
        recipe=pprint.pformat(recipe, width=100, sort_dicts=False),
        mean=f"{dataset.mean:.4f}", std=f"{dataset.std:.4f}", network=network_code(network),
        train_loss=_LOSS_WITH_AUX if any(layer.type == "aux" for layer in network.layers) else _LOSS,
        mirror=bool(dataset.mirror), torchvision="MNIST" if config.dataset == "mnist" else "FashionMNIST")
