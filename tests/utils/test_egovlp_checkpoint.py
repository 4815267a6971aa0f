"""The EgoVLP authors' checkpoint layout loads into VideoText where the architectures agree; the rest is reported."""
import torch

from ego_fsar.utils.checkpoint import extract_state_dict, report_mismatch
from ego_fsar.utils.checkpoint_formats import convert_state_dict, detect_format
from tests.models.test_video_text import _model, tiny_video_text_cfg


def test_egovlp_layout_converts_to_video_text(tmp_path):
    model = _model(tiny_video_text_cfg(str(tmp_path)))
    ours = model.state_dict()
    norm = torch.randn(16)
    released = {"state_dict": {
        "module.video_model.blocks.0.norm1.weight": norm,                   # same block layout
        "module.video_model.blocks.0.timeattn.qkv.weight": torch.zeros(48, 16),  # TimeSformer only
        "module.vid_proj.0.weight": torch.ones(8, 16), "module.vid_proj.0.bias": torch.zeros(8),
        "module.txt_proj.1.weight": torch.ones(8, 768), "module.txt_proj.1.bias": torch.zeros(8),  # DistilBERT width
        "module.text_model.transformer.layer.0.attention.q_lin.weight": torch.zeros(768, 768),
    }, "epoch": 10}
    state = extract_state_dict(released)
    assert detect_format(state) == "egovlp"
    converted = convert_state_dict(state, ours)
    assert torch.equal(converted["blocks.0.norm1.weight"], norm)
    assert torch.equal(converted["head.vid_proj.weight"], torch.ones(8, 16))
    report = report_mismatch(ours, converted)
    assert report["shape_mismatch"] == ["head.txt_proj.weight"]
    assert report["unexpected"] == ["blocks.0.timeattn.qkv.weight",
                                    "head.text.model.0.auto_model.transformer.layer.0.attention.q_lin.weight"]
    assert "patch_embed.proj.weight" in report["missing"]
