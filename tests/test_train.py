"""Training (train/): its first steps give the losses the committed checkpoint's log recorded, falling; two runs
give the same bytes; the checkpoint holds what its card says."""

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from janusweb.train.train import Config, examples, prepare, train_joint, train_vq

MODEL = Path(__file__).resolve().parents[1] / "models" / "shapes"
STEPS = 5


@pytest.fixture(scope="module")
def log():
    return json.loads((MODEL / "train_log.json").read_text())


def _first_steps(c: Config) -> tuple:
    """Stage 1 from scratch and stage 2 from the committed VQ, STEPS steps each, at the recorded schedules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(c.threads)
    try:
        t = prepare(c)
        vq_curve = train_vq(c, t.model.model.vqmodel, t.images, stop_after=STEPS)
        vq_weights = {k.removeprefix("model.vqmodel."): v for k, v in load_file(MODEL / "model.safetensors").items()
                      if k.startswith("model.vqmodel.")}
        t.model.model.vqmodel.load_state_dict(vq_weights)
        joint_curve = train_joint(c, t.model, examples(t), t.images, stop_after=STEPS)
    finally:
        torch.set_num_threads(threads)
    return vq_curve, joint_curve, t.model.state_dict()


def test_first_steps_fall_as_recorded_and_repeat_bit_for_bit(log):
    c = Config(**log["config"])
    vq_curve, joint_curve, state = _first_steps(c)
    for stage, curve in (("vq", vq_curve), ("joint", joint_curve)):
        recorded = log["curves"][stage][:STEPS]
        assert [row[0] for row in curve] == [row[0] for row in recorded]
        for row, want in zip(curve, recorded):
            assert row[1:] == pytest.approx(want[1:], rel=1e-3), (stage, row[0])
        assert curve[-1][1] < curve[0][1], stage  # the loss falls
    again = _first_steps(c)[2]
    assert state.keys() == again.keys()
    assert all(torch.equal(state[k], again[k]) for k in state)  # same seed, same threads: same weights


def test_checkpoint_matches_its_card(log):
    card = (MODEL / "README.md").read_text()
    digest = hashlib.sha256((MODEL / "model.safetensors").read_bytes()).hexdigest()
    assert digest in card
    task = json.loads((MODEL / "task.json").read_text())
    for colour, shape in task["held_out"]:
        assert f"{colour} {shape}" in card
    assert sum(f.stat().st_size for f in MODEL.iterdir()) <= 25 * 2**20
    config = json.loads((MODEL / "config.json").read_text())
    assert config["model_type"] == "janus" and config["vision_config"]["image_size"] == task["image_size"]
