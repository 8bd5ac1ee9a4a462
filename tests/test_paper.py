"""Paper scale: the seven classics of the lab report at their papers' sizes and inputs, trained on upsampled
digits, their figures recorded and shown by Compare beside the report's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core import checkpoints, paper
from core.__main__ import main
from core.cost import count_params
from core.training import TrainConfig

REPO = Path(__file__).resolve().parent.parent

# The papers' sizes with 1000 classes (torchvision's counts for its five; MobileNet 1.0-224's 4.2 M; LeNet-5 on
# its 32x32 input with 10), and ours with the digits' 10 classes.
PAPER_PARAMS = {"lenet5": (61_706, 61_706), "alexnet": (61_100_840, 57_044_810),
                "vgg11": (132_863_336, 128_807_306), "vgg19": (143_667_240, 139_611_210),
                "resnet18": (11_689_512, 11_181_642), "mobilenet": (4_231_976, 3_217_226),
                "googlenet": (13_004_888, 9_960_638)}  # GoogLeNet with its two auxiliary heads; 6.6 M without


@pytest.mark.parametrize("arch", list(paper.RESOLUTION))
def test_the_paper_networks_have_the_papers_parameter_counts(arch):
    imagenet, digits = PAPER_PARAMS[arch]
    if arch != "lenet5":
        assert count_params(paper.build(arch, num_classes=1000).network) == imagenet
    built = paper.build(arch, num_classes=10, generator=torch.Generator().manual_seed(0))
    assert count_params(built) == digits and built.resolution == paper.RESOLUTION[arch]


def test_a_digit_is_upsampled_to_the_papers_input_and_the_weights_follow_the_seed():
    seen = []
    alexnet = paper.build("alexnet", generator=torch.Generator().manual_seed(1)).eval()
    alexnet.network.features[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    with torch.no_grad():
        assert alexnet(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert seen == [(2, 3, 224, 224)]  # grey into three channels, at 224x224
    again = paper.build("alexnet", generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.network.features[0].weight, alexnet.network.features[0].weight)
    state = torch.random.get_rng_state()
    paper.build("lenet5", generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator is left alone


def test_a_resolution_is_the_zoos_or_the_papers():
    TrainConfig(arch="alexnet", resolution=224).validate()
    TrainConfig(arch="lenet5", resolution=32).validate()
    with pytest.raises(ValueError, match="alexnet trains at 224 .its paper's input. or 28"):
        TrainConfig(arch="alexnet", resolution=32).validate()
    with pytest.raises(ValueError, match="papers' own widths"):
        TrainConfig(arch="vgg11", resolution=224, width=0.5).validate()


def test_a_paper_scale_run_is_recorded_not_kept_and_compare_shows_it_beside_the_report(capsys):
    saved = len(checkpoints.read_manifest(checkpoints.runs_dir()))
    try:
        assert main(["train", "--arch", "lenet5", "--resolution", "32", "--epochs", "1", "--limit", "500",
                     "--json"]) == 0
        row = json.loads(capsys.readouterr().out)
        assert (row["arch"], row["resolution"], row["params"], row["epochs"]) == ("lenet5", 32, 61_706, 1)
        assert len(checkpoints.read_manifest(checkpoints.runs_dir())) == saved  # no model kept
        assert main(["bench", "--paper", "--only", "lenet5", "--epochs", "1", "--limit", "500", "--json"]) == 0
        [benched] = json.loads(capsys.readouterr().out)
        assert benched["batch_size"] == 64 and benched["images"] == 500  # the report's batch
        assert [r["arch"] for r in paper.rows_measured()] == ["lenet5"]  # the latest of each network

        at = AppTest.from_file(str(REPO / "lab.py"), default_timeout=300)
        at.switch_page("app_pages/3_Compare.py").run()
        assert not at.exception
        [report] = [d.value for d in at.dataframe if "family" in d.value.columns]
        lenet = report[report["family"] == "LeNet"].iloc[0]
        assert lenet["here: test acc. %"] == benched["test_accuracy"]
        assert report["here: test acc. %"].isna().sum() == len(report) - 1  # the six not measured here
        assert any("python -m core bench --paper" in c.value and "1 epochs, batch 64" in c.value for c in at.caption)
    finally:
        paper.report_file().unlink(missing_ok=True)


def test_bench_paper_refuses_a_network_the_report_does_not_have(capsys):
    assert main(["bench", "--paper", "--only", "lenet5,mlp"]) == 2
    assert "--only mlp: the lab report's networks are lenet5, alexnet" in capsys.readouterr().err
