"""Every trained model's answer to the same input, and their consensus (mean probability)."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from core import checkpoints
from core.checkpoints import ModelRecord

# Torch threads a page answers with. A class is served side by side, each session in a thread of its own;
# within one drawing, eleven small models on one image keep a second thread mostly spinning at barriers.
# Measured on 2 cores: a drawing cost the server 0.31-0.53 s of CPU with 2 threads, 0.19-0.21 s with one,
# and was answered as fast.
PAGE_THREADS = 1


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``threads`` for a while. It is this thread's setting, and the one
    that threads started meanwhile inherit."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Probabilities:
    """The answer read off a probability vector."""

    probabilities: torch.Tensor  # (classes,)

    @property
    def top(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max())


@dataclass
class Answer(_Probabilities):
    name: str
    label: str  # the name as pages show it (ModelRecord.label): "lenet5", or "lenet5 (run)" for a run
    arch: str
    shipped: bool
    probabilities: torch.Tensor  # (classes,) for one input
    milliseconds: float  # this model's forward pass


@dataclass
class Prediction(_Probabilities):
    answers: list[Answer]
    probabilities: torch.Tensor  # the consensus: mean of the models' probabilities
    left_out: dict[str, str] = field(default_factory=dict)  # model label -> why it gave no answer here

    @property
    def dissenters(self) -> list[str]:
        """Models whose top answer differs from the consensus."""
        return [a.label for a in self.answers if a.top != self.top]

    def to_json(self, classes: tuple[str, ...]) -> dict:
        return {
            "consensus": {"digit": self.top, "label": classes[self.top], "probability": round(self.confidence, 4)},
            "models": [
                {"name": a.name, "shown_as": a.label, "arch": a.arch, "shipped": a.shipped, "digit": a.top,
                 "label": classes[a.top], "probability": round(a.confidence, 4),
                 "milliseconds": round(a.milliseconds, 2),
                 "probabilities": [round(float(p), 4) for p in a.probabilities]}
                for a in self.answers
            ],
            "left_out": self.left_out,
        }


class Ensemble:
    """The trained models of one dataset, loaded once, answering together.

    A model whose file is missing, corrupt or mismatched is left out and reported in ``problems``;
    every other model keeps working.
    """

    def __init__(self, records: list[ModelRecord]) -> None:
        self.models: list[tuple[ModelRecord, nn.Module]] = []
        self.failed: list[tuple[ModelRecord, str]] = []  # the records that could not be loaded, and why
        for record in records:
            try:
                self.models.append((record, checkpoints.load_record(record)))
            except checkpoints.CheckpointError as error:
                self.failed.append((record, str(error)))

    @property
    def problems(self) -> dict[str, str]:
        """What is wrong with each model left out, by its label."""
        return {record.label: problem for record, problem in self.failed}

    def seen_by(self, owner: str | None) -> Ensemble:
        """The models ``owner`` sees (``ModelRecord.seen_by``), sharing these loaded ones: nothing is read again."""
        shown = copy.copy(self)
        shown.models = [(record, model) for record, model in self.models if record.seen_by(owner)]
        shown.failed = [(record, problem) for record, problem in self.failed if record.seen_by(owner)]
        return shown

    @classmethod
    def for_dataset(cls, dataset: str, *, include_runs: bool = True) -> Ensemble:
        return cls(checkpoints.find_models(dataset, include_runs=include_runs))

    def __len__(self) -> int:
        return len(self.models)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> list[Prediction]:
        """Answers for a batch of normalised N x 1 x 28 x 28 inputs: one forward pass per model."""
        if not self.models:
            raise ValueError("no trained models to ask: train one, or restore the shipped weights")
        per_model = []
        for record, model in self.models:
            start = time.perf_counter()
            probabilities = model(x).float().softmax(dim=1)
            per_model.append((record, probabilities, 1000 * (time.perf_counter() - start) / len(x)))
        predictions = []
        for i in range(len(x)):
            answers, left_out = [], {}
            for record, probabilities, ms in per_model:
                answer = Answer(record.name, record.label, record.arch, record.shipped, probabilities[i], ms)
                if torch.isfinite(answer.probabilities).all():
                    answers.append(answer)
                else:  # one broken model must not drag the consensus, nor mark the healthy ones as dissenting
                    left_out[answer.label] = "its output is not a number (NaN or infinite) for this input"
            if not answers:
                raise ValueError("no model gave a finite answer for this input: " + ", ".join(left_out))
            consensus = torch.stack([a.probabilities for a in answers]).mean(dim=0)
            predictions.append(Prediction(answers, consensus, left_out))
        return predictions
