"""Text encoders: packaged MiniLM, hf: folders (BERT, CLIP), the embedding cache, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from common.paths import cache_dir
from text2img import encoders
from text2img.encoders import (
    MINILM_SHA256,
    EmbeddingCache,
    EncoderError,
    TextEncoder,
    get_encoder,
    minilm_encoder,
    minilm_folder,
)

# The MiniLM extraction is shared with the real cache (extracting 90 MB per test is waste);
# everything else the tests write goes to tmp paths.
SHARED_ENCODERS = cache_dir("encoders")


@pytest.fixture(scope="module")
def minilm():
    torch.set_num_threads(1)
    return minilm_encoder(root=SHARED_ENCODERS)


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CGAN_CACHE", str(tmp_path / "cache"))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_minilm_is_a_text_encoder_with_unit_384d_output(minilm) -> None:
    assert isinstance(minilm, TextEncoder)
    emb = minilm.encode(["a small bird with blue striped wings", "this bird has a red crown"])
    assert emb.shape == (2, 384) and emb.dtype == torch.float32
    assert_close(emb.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)
    assert minilm.name == "minilm" and len(minilm.content_hash()) == 16


def test_minilm_ranks_crimson_closer_to_red_than_blue(minilm) -> None:
    crimson, red, blue = minilm.encode(
        ["a bird with a crimson crown", "a bird with a red crown", "a bird with a blue crown"])
    assert _cos(crimson, red) > _cos(crimson, blue) + 0.05


def test_minilm_folder_is_verified_by_sha256(minilm) -> None:
    folder = minilm.folder
    record = json.loads((folder / "verified.json").read_text())
    assert record["sha256"] == MINILM_SHA256 == encoders.MINILM_SHA256
    assert folder == minilm_folder(SHARED_ENCODERS)  # second call: no re-extraction


def test_tampered_minilm_weights_are_rejected(tmp_path) -> None:
    folder = tmp_path / f"all-MiniLM-L6-v2-{MINILM_SHA256[:12]}"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not the weights")
    (folder / "verified.json").write_text(json.dumps({"sha256": MINILM_SHA256, "size": 1,
                                                      "mtime_ns": 0}))
    with pytest.raises(EncoderError, match=r"sha256 does not match all-MiniLM-L6-v2"):
        minilm_folder(tmp_path)


def test_encode_order_is_independent_of_batching(minilm) -> None:
    captions = ["a bird", "a large bird with a long black beak and grey wings at dusk", "red"]
    joint = minilm.encode(captions)
    single = torch.cat([minilm.encode([c]) for c in captions])
    assert_close(joint, single, atol=2e-5, rtol=0)


def test_second_run_over_same_captions_calls_encoder_zero_times(minilm, tmp_path,
                                                                 monkeypatch) -> None:
    calls = []
    real_encode = minilm.encode
    monkeypatch.setattr(minilm, "encode", lambda caps: calls.append(len(caps)) or real_encode(caps))
    captions = ["a red bird", "a blue bird", "a red bird", "a bird at dusk"]
    first = EmbeddingCache(tmp_path / "emb").encode(minilm, captions, progress=False)
    assert calls == [3]  # the duplicate is encoded once
    cache = EmbeddingCache(tmp_path / "emb")  # a new process would start like this
    second = cache.encode(minilm, captions, progress=False)
    assert calls == [3] and cache.hits == 1 and cache.misses == 0
    assert_close(first, second, atol=0, rtol=0)
    assert_close(first[0], first[2], atol=0, rtol=0)


def test_cache_recomputes_when_captions_change_under_same_name(minilm, tmp_path) -> None:
    cache = EmbeddingCache(tmp_path)
    a = cache.encode(minilm, ["a red bird"], dataset_hash="ds", progress=False)
    b = cache.encode(minilm, ["a blue bird"], dataset_hash="ds", progress=False)
    assert cache.misses == 2 and not torch.allclose(a, b)


def test_cache_default_root_follows_cgan_cache(minilm, tmp_path) -> None:
    cache = EmbeddingCache()
    cache.encode(minilm, ["a grey bird"], progress=False)
    files = list((tmp_path / "cache" / "embeddings" / minilm.content_hash()).iterdir())
    assert len(files) == 1 and files[0].suffix == ".safetensors"


def test_empty_caption_is_a_clear_error(minilm) -> None:
    with pytest.raises(ValueError, match=r"caption #1 is empty"):
        minilm.encode(["a red bird", "   "])
    with pytest.raises(TypeError, match=r"caption #0 is NoneType"):
        minilm.encode([None])
    with pytest.raises(TypeError, match=r"single str"):
        minilm.encode("a red bird")


def test_2000_word_caption_is_truncated_with_a_warning(minilm) -> None:
    long = " ".join(["a small red bird with blue wings"] * 286)  # 2,002 words
    with pytest.warns(UserWarning, match=r"1 caption\(s\) longer than 256 tokens were truncated"):
        emb = minilm.encode([long, "a bird"])
    # Truncation keeps the first 256 tokens: the same as encoding a shorter prefix that
    # still exceeds the limit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prefix = minilm.encode([" ".join(long.split()[:600])])
    assert torch.isfinite(emb).all()
    assert_close(emb[0], prefix[0], atol=1e-5, rtol=0)


def test_non_ascii_text_is_encoded(minilm) -> None:
    emb = minilm.encode(["un oiseau rouge à la tête bleue", "鳥 🐦 with a café-coloured crown"])
    assert torch.isfinite(emb).all() and emb.shape == (2, 384)
    # Accents are stripped by the uncased tokenizer: "café" and "cafe" read the same.
    a, b = minilm.encode(["a café bird", "a cafe bird"])
    assert_close(a, b, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- hf:


def _tiny_tokenizer(folder: Path):
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "bird", "with", "red", "blue",
             "crown", "wings"]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    tok.save_pretrained(folder)
    return len(words)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vocab = _tiny_tokenizer(root / "bert")
    BertModel(BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=40)).save_pretrained(root / "bert")
    _tiny_tokenizer(root / "clip")
    text = dict(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, max_position_embeddings=24, bos_token_id=2,
                eos_token_id=3, pad_token_id=0)
    vision = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32, image_size=32, patch_size=16)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
              ).save_pretrained(root / "clip")
    return root


def test_hf_bert_folder_loads_offline_with_mean_or_cls_pooling(tiny_models) -> None:
    mean = get_encoder(f"hf:{tiny_models / 'bert'}")
    cls = get_encoder(f"hf:{tiny_models / 'bert'}#cls")
    assert mean.dim == cls.dim == 16 and mean.pooling == "mean" and cls.pooling == "cls"
    assert mean.max_length == 40
    a, b = mean.encode(["a red bird", "a blue bird with wings"])
    assert not torch.allclose(a, b)
    assert not torch.allclose(mean.encode(["a red bird"]), cls.encode(["a red bird"]))
    assert mean.content_hash() != cls.content_hash()


def test_hf_clip_folder_uses_projected_text_embedding(tiny_models) -> None:
    enc = get_encoder(f"hf:{tiny_models / 'clip'}")
    assert enc.pooling == "clip" and enc.dim == 8 and enc.max_length == 24
    assert enc.encode(["a red bird", "a blue crown"]).shape == (2, 8)


def test_hf_missing_model_says_what_is_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EncoderError, match=r"hf:someone/no-such-model: the model files are not "
                                           r"available offline"):
        get_encoder("hf:someone/no-such-model")
    with pytest.raises(EncoderError, match=r"folder not found"):
        get_encoder(f"hf:{tmp_path / 'missing'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EncoderError, match=r"needs config.json, tokenizer files"):
        get_encoder(f"hf:{empty}")


def test_unknown_encoder_name_lists_the_choices() -> None:
    with pytest.raises(EncoderError, match=r"use minilm, hf:<model id or folder>"):
        get_encoder("word2vec")


def test_linear_probe_reads_mentioned_attributes_from_minilm(minilm, tmp_path, monkeypatch):
    from text2img.probe import probe

    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "cache" / "encoders").symlink_to(SHARED_ENCODERS)  # reuse the extraction
    result = probe("minilm", n=60, holdout=0.25)
    acc, chance = result["accuracy"], result["chance"]
    assert set(acc) == set(chance) and len(acc) == 8
    # background and size are stated with dedicated words: far above chance even from 45
    # training birds; the colours need more data, but not below chance
    assert acc["background"] >= 0.8 and acc["size"] >= 0.8
    assert all(acc[k] > chance[k] for k in acc)


def test_probe_accuracy_reads_a_clean_code_and_not_one_drowned_in_noise() -> None:
    """The probe behind ``--checkpoint``: an attribute written into the vector is read back;
    the same vector under large Gaussian noise (an augmentation's σ ≫ its signal) is not."""
    from text2img.data.synthbirds import ATTRIBUTES
    from text2img.probe import probe_accuracy

    n, per = 400, 2
    rng = np.random.default_rng(0)
    attributes = np.stack([rng.integers(0, len(v), n) for _, v in ATTRIBUTES], 1)
    mentions = np.ones((n, per, len(ATTRIBUTES)), bool)
    x = torch.cat([F.one_hot(torch.from_numpy(attributes[:, k]), len(v)).float()
                   for k, (_, v) in enumerate(ATTRIBUTES)], 1)[:, None].expand(n, per, -1)
    gen = torch.Generator().manual_seed(0)
    clean = probe_accuracy(x + 0.05 * torch.randn(x.shape, generator=gen), attributes,
                           mentions, cut=300)
    noisy = probe_accuracy(x + 20.0 * torch.randn(x.shape, generator=gen), attributes,
                           mentions, cut=300)
    assert min(clean.values()) >= 0.99, clean
    for name, values in ATTRIBUTES:  # chance 1/len(values), give or take
        assert noisy[name] < 1 / len(values) + 0.2, (name, noisy[name])


def test_word_features_are_the_real_word_pieces_with_and_without_padding(minilm,
                                                                          tmp_path) -> None:
    captions = ["a red bird", "this bird has blue striped wings and a long orange beak"]
    words, mask = minilm.encode_tokens(captions)
    pieces = [len(minilm.tokenizer(c)["input_ids"]) - 2 for c in captions]  # no [CLS]/[SEP]
    assert words.dtype == torch.float16 and words.shape == (2, max(pieces), 384)
    assert mask.sum(1).tolist() == pieces
    assert mask[0, : pieces[0]].all() and not mask[0, pieces[0]:].any()
    assert words[0, pieces[0]:].abs().sum() == 0  # padding is zero
    alone, alone_mask = minilm.encode_tokens(captions[:1])  # no padding in its own batch
    assert alone_mask.sum() == pieces[0]
    assert_close(words[0, : pieces[0]].float(), alone[0].float(), atol=2e-3, rtol=0)
    # Contextual: "red" before "bird" and before "crown" are different vectors.
    other, _ = minilm.encode_tokens(["a red crown"])
    assert _cos(words[0, 1].float(), other[0, 1].float()) < 0.99
    cache = EmbeddingCache(tmp_path)
    first = cache.encode_tokens(minilm, captions, dataset_hash="ds", progress=False)
    again = EmbeddingCache(tmp_path).encode_tokens(minilm, captions, dataset_hash="ds",
                                                   progress=False)
    assert cache.misses == 1
    assert_close(first[0], words, atol=0, rtol=0)
    assert_close(again[0], words, atol=0, rtol=0) and torch.equal(again[1], mask)
    assert (tmp_path / minilm.content_hash() / "ds.words.safetensors").is_file()
