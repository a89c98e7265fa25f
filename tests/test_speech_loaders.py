"""Real-corpus loaders on miniature fixtures written in the released layouts:
VoiceBank+DEMAND (48 kHz, resampled to 16 kHz with the method recorded), VCC2016, VCC2018,
and SynthVoices read through the same loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech.data.vcc import SpeakerDataset, synthvoices_vc, vcc2016, vcc2018
from speech.data.voicebank_demand import VoiceBankDemand, find_split_dirs, resample_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from speech.data.synthvoices import build, load_preset

    root = tmp_path_factory.getbasetemp() / "speech-synthvoices"
    return build(load_preset("tiny"), root=root, workers=1, progress=False)


def _tone(sr: int, seconds: float, freq: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32)


@pytest.fixture()
def voicebank(tmp_path):
    """A miniature VoiceBank+DEMAND release: 48 kHz, 28-speaker train naming."""
    root = tmp_path / "vbd"
    names = {"train": ["p226_001", "p226_002", "p287_010"], "test": ["p232_001", "p257_004"]}
    for split, folder in (("train", "trainset_28spk_wav"), ("test", "testset_wav")):
        for i, name in enumerate(names[split]):
            clean = _tone(48000, 0.5 + 0.1 * i, 300 + 50 * i)
            noisy = clean + 0.05 * np.random.default_rng(i).standard_normal(len(clean))
            for kind, x in (("clean", clean), ("noisy", noisy)):
                (root / f"{kind}_{folder}").mkdir(parents=True, exist_ok=True)
                sf.write(root / f"{kind}_{folder}" / f"{name}.wav", x, 48000)
    return root


def test_voicebank_48k_release_is_read_at_16k_with_the_method_recorded(voicebank):
    ds = VoiceBankDemand(voicebank, "train", resample_method="kaiser_best")
    assert ds.ids == ["p226_001", "p226_002", "p287_010"]
    assert (ds.source_sr, ds.resample_method) == (48000, "kaiser_best")
    item = ds[1]
    assert item["clean"].shape == item["noisy"].shape == (int(0.6 * 16000),)
    assert item["sr"] == 16000 and item["resample_method"] == "kaiser_best"
    assert item["clean"].dtype == torch.float32
    assert len(VoiceBankDemand(voicebank, "test")) == 2


def test_voicebank_random_segments_are_aligned_crops(voicebank):
    ds = VoiceBankDemand(voicebank, "train", segment=4000)
    full = VoiceBankDemand(voicebank, "train")[0]
    torch.manual_seed(0)
    item = ds[0]
    assert item["clean"].shape == (4000,)
    diff = (full["noisy"] - full["clean"]).numpy()
    # Find where the crop came from; noisy and clean come from the same place.
    start = int(np.argmin([float((full["clean"][s : s + 4000] - item["clean"]).abs().sum())
                           for s in range(len(full["clean"]) - 4000 + 1)]))
    torch.testing.assert_close(item["noisy"] - item["clean"],
                               torch.from_numpy(diff[start : start + 4000]), atol=1e-6, rtol=0)
    short = VoiceBankDemand(voicebank, "train", segment=20000)[0]  # longer than the file
    assert short["clean"].shape == (20000,) and float(short["clean"][-100:].abs().sum()) == 0


def test_resampling_the_release_once_writes_the_same_layout_and_provenance(voicebank, tmp_path):
    out = resample_corpus(voicebank, tmp_path / "vbd16", method="soxr_hq", progress=False)
    info = json.loads((out / "resample.json").read_text())
    assert (info["source_sr"], info["sr"], info["method"], info["files"]) == ([48000], 16000,
                                                                              "soxr_hq", 10)
    ds = VoiceBankDemand(out, "test")
    assert ds.source_sr == 16000 and ds.resample_method is None
    assert ds.provenance["method"] == "soxr_hq"
    assert sf.info(out / "clean_testset_wav" / "p232_001.wav").samplerate == 16000


def test_voicebank_layout_problems_are_named(voicebank, tmp_path):
    (voicebank / "noisy_trainset_28spk_wav" / "p226_002.wav").unlink()
    with pytest.raises(ValueError, match=r"1 files without a partner, e.g. \['p226_002'\]"):
        VoiceBankDemand(voicebank, "train")
    with pytest.raises(FileNotFoundError, match="clean_testset"):
        find_split_dirs(tmp_path, "test")
    (voicebank / "clean_trainset_56spk_wav").mkdir()
    with pytest.raises(ValueError, match="several clean train folders"):
        find_split_dirs(voicebank, "train")


def test_voicebank_loader_reads_the_synthvoices_enhancement_set(tiny):
    ds = VoiceBankDemand(tiny.enhance_root, "test")
    assert len(ds) == 3 and ds.resample_method is None
    assert ds.ids == [m["id"] for m in tiny.mixtures("test")]


def _speaker_tree(root: Path, speakers: dict[str, float], ids: list[str], sr: int) -> None:
    for spk, freq in speakers.items():
        (root / spk).mkdir(parents=True, exist_ok=True)
        for i, uid in enumerate(ids):
            sf.write(root / spk / f"{uid}.wav", _tone(sr, 0.3, freq, seed=i), sr)


def test_vcc2016_layout_lists_speakers_and_parallel_evaluation_pairs(tmp_path):
    _speaker_tree(tmp_path / "vcc2016_training", {"SF1": 220, "TM1": 110},
                  ["100001", "100002"], 16000)
    _speaker_tree(tmp_path / "evaluation_all", {"SF1": 220, "TM1": 110},
                  ["200001", "200002", "200003"], 16000)
    corpus = vcc2016(tmp_path)
    assert corpus.speakers() == ["SF1", "TM1"]
    assert [u.id for u in corpus.utterances("SF1")] == ["100001", "100002"]
    pairs = corpus.pairs("SF1", "TM1")
    assert [(a.id, b.id) for a, b in pairs] == [("200001", "200001"), ("200002", "200002"),
                                                ("200003", "200003")]
    assert pairs[0][0].path.parent.name == "SF1" and pairs[0][1].path.parent.name == "TM1"
    ds = SpeakerDataset(corpus, ["SF1", "TM1"])
    item = ds[3]
    assert (item["speaker"], item["speaker_index"], item["id"]) == ("TM1", 1, "100002")
    assert item["wav"].shape == (4800,)


def test_vcc2018_22k_layout_pairs_sources_with_target_references(tmp_path):
    _speaker_tree(tmp_path / "vcc2018_training", {"VCC2SF3": 230, "VCC2TM1": 120},
                  ["10001", "10002"], 22050)
    _speaker_tree(tmp_path / "vcc2018_evaluation", {"VCC2SF3": 230}, ["30001", "30002"], 22050)
    _speaker_tree(tmp_path / "vcc2018_reference", {"VCC2TM1": 120}, ["30001", "30002"], 22050)
    corpus = vcc2018(tmp_path)
    assert corpus.native_sr == 22050 and corpus.speakers() == ["VCC2SF3", "VCC2TM1"]
    pairs = corpus.pairs("VCC2SF3", "VCC2TM1", "eval")
    assert [(a.path.parent.parent.name, b.path.parent.parent.name) for a, b in pairs] == [
        ("vcc2018_evaluation", "vcc2018_reference")] * 2
    item = SpeakerDataset(corpus, ["VCC2TM1"], resample_method="polyphase")[0]
    assert item["sr"] == 16000 and item["wav"].shape == (int(np.ceil(0.3 * 22050 * 16000
                                                                       / 22050)),)


def test_vcc_layout_problems_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="vcc2016_training"):
        vcc2016(tmp_path)
    _speaker_tree(tmp_path / "vcc2016_training", {"SF1": 220}, ["100001"], 16000)
    corpus = vcc2016(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"speaker 'XX'.*\['SF1'\]"):
        corpus.utterances("XX")
    with pytest.raises(KeyError, match="no 'eval' split"):
        corpus.pairs("SF1", "SF1")


def test_synthvoices_vc_part_reads_through_the_same_loader(tiny):
    corpus = synthvoices_vc(tiny.root)
    assert corpus.speakers() == ["kal", "slt"]
    assert len(corpus.pairs("kal", "slt")) == 2
    assert [u.path for u in corpus.utterances("slt")] == tiny.vc_train("slt")
