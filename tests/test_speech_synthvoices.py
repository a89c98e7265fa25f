"""SynthVoices: real festival/espeak-ng synthesis of a tiny corpus, its layout and promises
(non-parallel training text, a parallel test set, unseen enhancement test conditions,
exact SNRs), caching, missing-voice messages, the grammar and the noise families."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import welch

from common.config import ConfigError
from speech.data import synthvoices as sv
from speech.data.grammar import sentences
from speech.data.noise import NOISE_FAMILIES, active_power, make_noise, mix_at_snr

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "speech-synthvoices"
    return sv.build(sv.load_preset("tiny"), root=root, workers=1, progress=False)


def test_every_corpus_voice_is_installed():
    # Fails with "apt-get install <package>" for each missing voice (CI installs them).
    sv.check_voices(list(sv.VOICES))


def test_a_missing_voice_names_its_debian_package(monkeypatch):
    monkeypatch.setitem(sv.VOICES, "zz", sv.Voice("festival", "nosuch_diphone", "festvox-nosuch",
                                                  "male", "test"))
    monkeypatch.setitem(sv.VOICES, "yy", sv.Voice("espeak", "en+nosuchvariant", "espeak-ng",
                                                  "male", "test"))
    with pytest.raises(sv.VoiceMissingError, match=r"apt-get install festvox-nosuch") as err:
        sv.check_voices(["kal", "zz", "yy"])
    assert "nosuchvariant" in str(err.value) and "kal" not in str(err.value)


def test_tiny_corpus_layout_is_16k_mono_pcm16_at_the_target_level(tiny):
    assert tiny.speakers == ["kal", "slt"]
    for spk in tiny.speakers:
        train, test = tiny.vc_train(spk), tiny.vc_test(spk)
        assert [p.name for p in test] == ["p0001.wav", "p0002.wav"]
        assert len(train) == 4
        for p in train + test:
            info = sf.info(p)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            x, _ = sf.read(p)
            level = 10 * np.log10(active_power(x, 16000))
            assert -27.5 < level < -25.5, (p, level)
            assert 1.0 < len(x) / 16000 < 8.0


def test_training_text_is_non_parallel_and_the_test_set_parallel(tiny):
    s = tiny.sentences()
    kal, slt, parallel = set(s["train"]["kal"]), set(s["train"]["slt"]), set(s["parallel"])
    assert len(kal) == len(slt) == 4 and len(parallel) == 2
    assert not (kal & slt) and not (kal & parallel) and not (slt & parallel)
    pairs = tiny.parallel_pairs("kal", "slt")
    assert [(a.name, b.name) for a, b in pairs] == [("p0001.wav", "p0001.wav"),
                                                    ("p0002.wav", "p0002.wav")]
    assert tiny.text(pairs[0][0]) == tiny.text(pairs[0][1]) == s["parallel"][0]
    assert tiny.text(tiny.vc_train("slt")[2]) == s["train"]["slt"][2]


def test_the_two_speakers_really_differ_in_pitch(tiny):
    from speech.features import world_f0

    medians = {}
    for spk in tiny.speakers:
        x, _ = sf.read(tiny.vc_test(spk)[0])
        f0, _ = world_f0(x, 16000, method="dio")
        medians[spk] = float(np.median(f0[f0 > 0]))
    assert 80 < medians["kal"] < 140 and 140 < medians["slt"] < 230, medians


def test_enhancement_test_conditions_are_unseen_in_training(tiny):
    train, test = tiny.mixtures("train"), tiny.mixtures("test")
    assert len(train) == 4 and len(test) == 3
    for key in ("speaker", "family", "snr"):
        assert not ({m[key] for m in train} & {m[key] for m in test}), key
    assert {m["snr"] for m in train} <= {0.0, 5.0, 10.0, 15.0}
    assert {m["snr"] for m in test} <= {2.5, 7.5, 12.5, 17.5}
    assert {m["speaker"] for m in test} == {"slt"}


def test_each_dry_mixture_has_exactly_its_recorded_snr(tiny):
    checked = 0
    for m in tiny.mixtures("train") + tiny.mixtures("test"):
        clean, _ = sf.read(m["clean"])
        noisy, _ = sf.read(m["noisy"])
        assert len(clean) == len(noisy)
        if m["rt60"] is not None:
            continue  # reverberant speech differs from the dry target by more than noise
        snr = 10 * np.log10(active_power(clean, 16000) / np.mean((noisy - clean) ** 2))
        assert abs(snr - m["snr"]) < 0.05, (m["id"], snr, m["snr"])
        checked += 1
    assert checked >= 2


def test_reverberation_keeps_the_direct_path_aligned_with_the_dry_signal(tiny):
    from speech.data.noise import reverberate, room_impulse_response

    assert any(m["rt60"] for m in tiny.mixtures("train") + tiny.mixtures("test"))
    rir = room_impulse_response(np.random.default_rng(0), 16000, rt60=0.5)
    click = np.zeros(16000)
    click[1000] = 1.0
    y = reverberate(click, rir)
    assert len(y) == len(click) and int(np.argmax(np.abs(y))) == 1000
    tail = np.sum(y[1000 + 80 :] ** 2) / np.sum(y**2)  # energy after the first 5 ms
    assert tail > 0.2  # a reverberant room, not a delay line
    torch.testing.assert_close(np.sum(y**2), 1.0, atol=1e-9, rtol=0)  # power kept


def test_a_second_build_is_served_from_the_cache_without_synthesis(tiny, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("synthesis ran on a cached build")

    monkeypatch.setattr(sv, "synthesize", fail)
    monkeypatch.setattr(sv, "_synth_task", fail)
    again = sv.build(sv.load_preset("tiny"), root=tiny.root.parent, workers=1, progress=False)
    assert again.from_cache and again.root == tiny.root


def test_the_cache_key_covers_every_parameter_but_the_name():
    a = sv.load_preset("tiny")
    b = sv.load_preset("tiny", ["enhance.reverb_prob=0.1"])
    c = sv.load_preset("tiny", ["name=other"])
    assert a.key() != b.key() and a.key() == c.key()


@pytest.mark.parametrize("override, message", [
    ("enhance.test_speakers=[kal]", "speakers must be unseen"),
    ("enhance.test_families=[white]", "noise families must be unseen"),
    ("enhance.test_snrs=[5.0]", "SNRs must be unseen"),
    ("speakers=[kal,nobody]", "unknown speaker"),
    ("enhance.train_families=[thunder]", "unknown noise family"),
])
def test_configs_breaking_the_corpus_promises_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        sv.load_preset("tiny", [override])


def test_presets_are_listed_when_an_unknown_one_is_asked_for():
    with pytest.raises(ConfigError, match=r"presets: \['default', 'tiny'\]"):
        sv.load_preset("huge")


def test_grammar_is_deterministic_distinct_and_prefix_stable():
    a, b = sentences(300, seed=3), sentences(300, seed=3)
    assert a == b and len(set(a)) == 300
    assert sentences(50, seed=3) == a[:50]
    assert sentences(50, seed=4) != a[:50]
    for s in a:
        assert s[-1] in ".?" and '"' not in s and 5 <= len(s.split()) <= 16


@pytest.mark.parametrize("family", sorted(NOISE_FAMILIES))
def test_noise_families_are_unit_rms_and_seeded(family):
    others = [np.sin(np.arange(8000) * (0.05 + k / 100)) for k in range(6)]
    a = make_noise(family, 24000, 16000, np.random.default_rng(5), others)
    b = make_noise(family, 24000, 16000, np.random.default_rng(5), others)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(float(np.sqrt(np.mean(a**2))), 1.0, atol=1e-9, rtol=0)


@pytest.mark.parametrize("family, slope", [("white", 0.0), ("pink", -3.0), ("brown", -6.0)])
def test_coloured_noises_have_their_spectral_slopes(family, slope):
    x = make_noise(family, 16000 * 8, 16000, np.random.default_rng(0))
    f, p = welch(x, 16000, nperseg=4096)
    octaves = [(250, 500), (500, 1000), (1000, 2000), (2000, 4000)]
    # Power spectral density ∝ 1/f^a falls by 3.01·a dB per octave.
    levels = [10 * np.log10(np.mean(p[(f >= lo) & (f < hi)])) for lo, hi in octaves]
    per_octave = np.diff(levels)
    assert np.all(np.abs(per_octave - slope) < 1.0), per_octave


def test_mains_hum_sits_on_a_50_or_60_hz_grid():
    x = make_noise("hum", 16000 * 4, 16000, np.random.default_rng(2))
    spec = np.abs(np.fft.rfft(x))
    peak_hz = np.argmax(spec) / 4
    assert min(abs(peak_hz / 50 - round(peak_hz / 50)), abs(peak_hz / 60 - round(peak_hz / 60))
               ) * 50 < 1.0


def test_mix_at_snr_sets_the_active_speech_snr():
    rng = np.random.default_rng(0)
    speech = np.concatenate([np.zeros(8000), rng.standard_normal(16000), np.zeros(8000)])
    noise = rng.standard_normal(len(speech))
    noisy, gain = mix_at_snr(speech, noise, 7.5, 16000)
    snr = 10 * np.log10(active_power(speech, 16000) / np.mean((noisy - speech) ** 2))
    torch.testing.assert_close(snr, 7.5, atol=1e-9, rtol=0)


def test_cli_help_voices_and_dry_run():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "speech.data.synthvoices", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=120)

    assert "festvox-us-slt-hts" in run("--help").stdout
    voices = run("voices").stdout
    assert "kal_diphone" in voices and "MISSING" not in voices
    dry = run("build", "--preset", "tiny", "--dry-run", "train_sentences=5")
    assert dry.returncode == 0 and "train_sentences: 5" in dry.stdout and "# key:" in dry.stdout
    bad = run("build", "--preset", "tiny", "--dry-run", "enhance.test_snrs=[0.0]")
    assert bad.returncode == 2 and "unseen" in bad.stderr


def test_manifest_records_sizes_timings_and_engines(tiny):
    m = json.loads((tiny.root / "manifest.json").read_text())
    assert m["key"] == sv.load_preset("tiny").key() and m["sr"] == 16000
    assert m["bytes"] > 0 and m["build_seconds"] > 0
    assert "festival" in m["engines"] and "espeak-ng" in m["engines"]
    assert m["enhance"]["test"]["speakers"] == ["slt"]
