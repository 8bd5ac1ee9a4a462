"""A generator's weights file and manifest entry, saved and found like the classifiers'."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from core import checkpoints, data
from core.gan.scores import Scores
from core.gan.training import GanResult
from core.models import MAX_CLASSES
from core.models.cgan import ARCH, LATENT, MAX_LATENT, MAX_WIDTH, Generator


def save_generator(result: GanResult, *, score: Callable[[Generator], Scores], name: str = ARCH, ship: bool = False,
                   folder: Path | None = None, owner: str = "") -> checkpoints.ModelRecord:
    """Keep a trained generator as ``checkpoints.save`` says (a run, or ``ship`` for the shipped one),
    as ``<dataset>/<name>.safetensors`` and its entry; ``score`` measures the generator as written."""
    name = checkpoints.check_name(name)
    dataset = result.config.dataset
    generator = result.generator
    file = f"{dataset}/{checkpoints.file_stem(name, ARCH)}.safetensors"
    metadata = {"arch": ARCH, "dataset": dataset, "width": str(generator.width), "latent": str(generator.latent),
                "num_classes": str(generator.num_classes)}
    summary = result.summary()
    record = checkpoints.ModelRecord(
        name=name, arch=ARCH, dataset=dataset, file=file, epochs=summary["epochs"], seconds=summary["seconds"],
        device=summary["device"], date=checkpoints.now(), code_version=checkpoints.code_version(), kind="generator",
        config=summary["config"], history=summary["history"], owner=owner,
    )
    return checkpoints.save(generator, record, metadata, ship=ship, folder=folder,
                            measure=lambda written: score(written).to_json())


def record_scores(record: checkpoints.ModelRecord, scores: Scores) -> checkpoints.ModelRecord:
    """Put new scores into a generator's manifest entry (after a new judge ships, say)."""
    record = replace(record, metrics=scores.to_json())
    checkpoints.add_record(record.folder, record)
    return record


def load_generator(path: Path | str) -> Generator:
    """A generator from its weights file, its metadata checked before it is built and its tensors
    after (CheckpointError otherwise)."""
    tensors, metadata = checkpoints.read_weights(path)
    if metadata.get("arch") != ARCH:
        raise checkpoints.CheckpointError(f"{path}: holds {metadata.get('arch')!r} weights, not a CGAN generator")

    def number(key: str, default: int, high: int) -> int:
        return int(checkpoints.metadata_number(metadata, key, default=default, low=1, high=high, integer=True,
                                               path=path))

    num_classes = number("num_classes", 10, MAX_CLASSES)
    dataset = metadata.get("dataset")
    classes = len(data.DATASETS[dataset].classes) if dataset in data.DATASETS else num_classes
    if num_classes != classes:  # the pages and the scores ask for every class of the dataset
        raise checkpoints.CheckpointError(f"{path}: metadata num_classes={str(num_classes)!r} does not match "
                                          f"{dataset}'s {classes} classes")
    generator = Generator(num_classes=num_classes, latent=number("latent", LATENT, MAX_LATENT),
                          width=number("width", 64, MAX_WIDTH))
    return checkpoints.fill(generator, tensors, path, ARCH)


def list_generators(dataset: str) -> list[checkpoints.ModelRecord]:
    """A dataset's generators: the shipped one first, then this machine's runs, newest first."""
    found = []
    for folder in (checkpoints.WEIGHTS_DIR, checkpoints.runs_dir()):
        records = [r for r in checkpoints.read_manifest(folder) if r.kind == "generator" and r.dataset == dataset]
        found += sorted(records, key=lambda r: r.date, reverse=True)
    return found


def find_generator(dataset: str) -> checkpoints.ModelRecord | None:
    """The shipped generator of a dataset, else this machine's latest one, else None."""
    found = list_generators(dataset)
    return found[0] if found else None
