"""PSPGen.load says what a file is when it is not a model; save fails before writing."""

import json

import pytest
import torch

from psppyro.models import PSPGen


def _tiny():
    return PSPGen(2, (4, 4), 1, 2, 1, width=8, small_width=4)


def _load_error(path):
    with pytest.raises(ValueError) as info:
        PSPGen.load(path)
    message = str(info.value)
    assert f"{str(path)!r} is not a psppyro model file (" in message
    return message


def test_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    assert _load_error(tmp_path / "e.pt").endswith("(empty file)")


def test_not_a_torch_file(tmp_path):
    (tmp_path / "t.pt").write_text("hello\n")
    assert "not a torch file" in _load_error(tmp_path / "t.pt")


def test_other_torch_files(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"config": "{}"}, tmp_path / "half.pt")
    for name in ("tensor.pt", "half.pt"):
        assert "without the 'config' and 'state_dict'" in _load_error(tmp_path / name)


def test_folder_and_missing_file(tmp_path):
    assert "it is a folder" in _load_error(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model file"):
        PSPGen.load(tmp_path / "none.pt")


def test_training_checkpoint_points_to_resume(tmp_path):
    gen = _tiny()
    g = torch.Generator().manual_seed(0)
    phi = torch.rand(6, 2, generator=g)
    x = (torch.rand(6, 4, 4, generator=g) < 0.5).float()
    m = torch.randn(6, 1, generator=g)
    gen.fit((phi, x, m), epochs=1, batch_size=6, checkpoint_dir=tmp_path, checkpoint_every=1,
            progress=False)
    ckpt = tmp_path / "epoch_0001.pt"
    assert ckpt.exists()
    message = _load_error(ckpt)
    assert "it is a training checkpoint" in message and "--resume" in message
    # The model itself, saved with save(), loads.
    gen.save(tmp_path / "gen.pt")
    back = PSPGen.load(tmp_path / "gen.pt")
    for (k, a), (_, b) in zip(gen.state_dict().items(), back.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_a_file_from_an_incompatible_version(tmp_path):
    gen = _tiny()
    gen.save(tmp_path / "gen.pt")
    blob = torch.load(tmp_path / "gen.pt", weights_only=True)
    config = json.loads(blob["config"])
    config["no_such_option"] = 1
    blob["config"], blob["version"] = json.dumps(config), "0.0.1"
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(ValueError, match=r"written by psppyro 0\.0\.1 and does not fit"):
        PSPGen.load(tmp_path / "old.pt")
    blob = torch.load(tmp_path / "gen.pt", weights_only=True)
    blob["state_dict"] = {k: v[..., :1] if v.dim() else v for k, v in blob["state_dict"].items()}
    torch.save(blob, tmp_path / "shapes.pt")
    with pytest.raises(ValueError, match="does not fit this version's PSPGen"):
        PSPGen.load(tmp_path / "shapes.pt")


def test_save_checks_the_folder_and_leaves_no_partial_file(tmp_path):
    gen = _tiny()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gen.save(tmp_path / "missing" / "gen.pt")
    with pytest.raises(ValueError, match="is a folder"):
        gen.save(tmp_path)
    gen.save(tmp_path / "gen.pt")
    gen.save(tmp_path / "gen.pt")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.pt"]
