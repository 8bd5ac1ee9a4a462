"""A run depends on its seed alone (issue 14, item 6): page threads that build models and draw from
torch's global random generator while a job trains must not change what it learns, and a run must not
move that generator either."""

from __future__ import annotations

import threading

import torch

from core import gan
from core.models import get_model
from core.training import TrainConfig, train

# MLP has dropout, so its masks are drawn all through training, not only at initialisation.
SMALL = TrainConfig(arch="mlp", width=0.25, epochs=2, limit=400, batch_size=50, log_every=1)


def busy_page(stop: threading.Event, started: threading.Event) -> None:
    """What the Compare page and others do meanwhile: seed torch, build models, draw random numbers."""
    seed = 1
    while not stop.is_set():
        torch.manual_seed(seed)
        model = get_model("alexnet", width=0.25).train()  # its dropout draws from the global generator
        model(torch.randn(4, 1, 28, 28))
        torch.randn(1000)
        seed += 1
        started.set()


def test_a_run_gives_the_same_weights_while_another_thread_draws_random_numbers():
    alone = train(SMALL).model.state_dict()

    stop, started = threading.Event(), threading.Event()
    page = threading.Thread(target=busy_page, args=(stop, started))
    page.start()
    try:
        started.wait()
        busy = train(SMALL).model.state_dict()
    finally:
        stop.set()
        page.join()
    assert alone.keys() == busy.keys()
    for key, value in alone.items():
        assert torch.equal(value, busy[key]), key


def test_a_run_leaves_the_global_generator_as_it_found_it():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    train(SMALL)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_gan_run_leaves_the_global_generator_as_it_found_it_and_depends_on_its_seed_alone():
    config = gan.GanConfig(epochs=1, limit=256, batch_size=64, width=8)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = gan.train_gan(config).generator.state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(99)  # another seed in the global generator changes nothing
    second = gan.train_gan(config).generator.state_dict()
    for key, value in first.items():
        assert torch.equal(value, second[key]), key
