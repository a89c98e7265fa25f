"""speech.metrics: closed-form cases, agreement with the pesq/pystoi packages, and the
composite measures against independent computations.

Where the references come from
------------------------------
``_reference_*`` below is a second, deliberately plain implementation of segSNR, LLR, WSS
and the composite measures, written for this test from the algorithm description that
Hu & Loizou published with their 2008 paper (the MATLAB routines ``composite.m``,
``comp_snr``/``llr``/``wss`` distributed with P. C. Loizou, "Speech Enhancement: Theory and
Practice", CRC Press): per-frame loops, an explicit Levinson-Durbin recursion, a Toeplitz
matrix from ``scipy.linalg``, and the while-loop peak search, so it shares no code with
the vectorised ``speech.metrics``. The pinned numbers in
``test_composite_parts_match_pinned_third_party_values`` were computed once with the PyPI
package ``pysepm-evo`` 0.1.1 (a Python port of the same MATLAB code; not a dependency)
on the same fixed signal pair.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.linalg import toeplitz

from speech import metrics as M
from speech.features import synthetic_voice

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SR = 16000


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    from speech.data.synthvoices import build, load_preset

    root = tmp_path_factory.getbasetemp() / "speech-synthvoices"
    return build(load_preset("tiny"), root=root, workers=1, progress=False)


@pytest.fixture(scope="module")
def pair():
    """The fixed signal pair: a synthetic vowel glide + low-passed noise at 5 dB SNR."""
    x = synthetic_voice(SR, 3.0, 0)["wav"]
    rng = np.random.default_rng(1)
    n = np.convolve(rng.standard_normal(len(x)), np.ones(4) / 4, "same")
    y = x + n * np.sqrt(np.mean(x**2) / np.mean(n**2)) * 10 ** (-5 / 20)
    return x, y


@pytest.fixture(scope="module")
def speech_pair(tiny):
    from speech.audio import read_audio

    clean = read_audio(tiny.vc_test("kal")[0], SR).samples.astype(np.float64)
    noise = np.random.default_rng(2).standard_normal(len(clean))
    noisy = clean + noise * np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-10 / 20)
    return clean, noisy


# ----------------------------------------------------------------- independent reference


def _ref_frames(clean, proc, fs):
    win = round(30 * fs / 1000)
    skip = win // 4
    count = int(len(clean) / skip - win / skip)
    hann = np.array([0.5 * (1 - math.cos(2 * math.pi * k / (win + 1)))
                     for k in range(1, win + 1)])
    for f in range(count):
        s = f * skip
        yield clean[s : s + win] * hann, proc[s : s + win] * hann


def _reference_segsnr(clean, proc, fs):
    values = []
    for c, p in _ref_frames(clean, proc, fs):
        snr = 10 * math.log10(np.sum(c**2) / (np.sum((c - p) ** 2) + np.finfo(float).eps)
                              + np.finfo(float).eps)
        values.append(min(max(snr, -10.0), 35.0))
    return float(np.mean(values))


def _reference_lpc(frame, order):
    r = [float(np.dot(frame[: len(frame) - k], frame[k:])) for k in range(order + 1)]
    a = [0.0] * order  # predictor coefficients a_1..a_P (positive convention)
    energy = r[0]
    for i in range(order):
        acc = r[i + 1] - sum(a[j] * r[i - j] for j in range(i))
        k = acc / energy
        previous = a[:]
        a[i] = k
        for j in range(i):
            a[j] = previous[j] - k * previous[i - 1 - j]
        energy *= 1 - k * k
    return np.array(r), np.array([1.0] + [-v for v in a])


def _reference_llr(clean, proc, fs):
    order = 10 if fs < 10000 else 16
    out = []
    for c, p in _ref_frames(clean, proc, fs):
        r_c, a_c = _reference_lpc(c, order)
        _, a_p = _reference_lpc(p, order)
        big_r = toeplitz(r_c)
        out.append(math.log((a_p @ big_r @ a_p) / (a_c @ big_r @ a_c)))
    return out


def _reference_wss(clean, proc, fs):
    centres = [50, 120, 190, 260, 330, 400, 470, 540, 617.372, 703.378, 798.717, 904.128,
               1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
               2446.71, 2701.97, 2978.04, 3276.17, 3597.63]
    widths = [70, 70, 70, 70, 70, 70, 70, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
              127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631,
              255.255, 276.072, 298.126, 321.465, 346.136]
    win = round(30 * fs / 1000)
    n_fft = 2 ** math.ceil(math.log2(2 * win))
    half = n_fft // 2
    filters = []
    for cf, bw_hz in zip(centres, widths, strict=True):
        centre_bin = math.floor(cf / (fs / 2) * half)
        bw = bw_hz / (fs / 2) * half
        h = np.array([math.exp(-11 * ((j - centre_bin) / bw) ** 2
                               + math.log(widths[0]) - math.log(bw_hz)) for j in range(half)])
        filters.append(np.where(h > math.exp(-30 / (2 * 2.303)), h, 0.0))

    def band_db(frame):
        spec = np.abs(np.fft.fft(frame, n_fft)[:half]) ** 2
        return [10 * math.log10(max(float(np.dot(spec, h)), 1e-10)) for h in filters]

    def peaks(energy, slope):
        # Returns, per band i (0-based), the level of the nearest local peak, scanning
        # right on a rising slope and left otherwise, indexing as the MATLAB original does.
        out = []
        nb = len(energy)
        for i in range(nb - 1):
            if slope[i] > 0:
                n = i
                while n < nb - 1 and slope[n] > 0:
                    n += 1
                out.append(energy[n - 1])
            else:
                n = i
                while n >= 0 and slope[n] <= 0:
                    n -= 1
                out.append(energy[n + 1])
        return out

    dist = []
    for c, p in _ref_frames(clean, proc, fs):
        weights, slopes = [], []
        for frame in (c, p):
            e = band_db(frame)
            s = [e[i + 1] - e[i] for i in range(len(e) - 1)]
            pk = peaks(e, s)
            top = max(e)
            weights.append([20 / (20 + top - e[i]) * (1 / (1 + pk[i] - e[i]))
                            for i in range(len(s))])
            slopes.append(s)
        w = [(a + b) / 2 for a, b in zip(*weights, strict=True)]
        num = sum(wi * (sc - sp) ** 2 for wi, sc, sp in zip(w, *slopes, strict=True))
        dist.append(num / sum(w))
    return dist


def _lowest_95(values):
    v = sorted(values)
    return float(np.mean(v[: round(len(v) * 0.95)]))


def _reference_composite(clean, proc, fs, pesq_value):
    eps = np.finfo(float).eps
    clean, proc = clean + eps, proc + eps
    llr = _lowest_95(_reference_llr(clean, proc, fs))
    wss = _lowest_95(_reference_wss(clean, proc, fs))
    seg = _reference_segsnr(clean, proc, fs)
    csig = min(5, max(1, 3.093 - 1.029 * llr + 0.603 * pesq_value - 0.009 * wss))
    cbak = min(5, max(1, 1.634 + 0.478 * pesq_value - 0.007 * wss + 0.063 * seg))
    covl = min(5, max(1, 1.594 + 0.805 * pesq_value - 0.512 * llr - 0.007 * wss))
    return {"llr": llr, "wss": wss, "ssnr": seg, "csig": csig, "cbak": cbak, "covl": covl}


# ----------------------------------------------------------------- closed forms


def test_identical_signals_score_the_maximum_everywhere(speech_pair):
    clean, _ = speech_pair
    out = M.enhancement_metrics(clean, clean, SR)
    assert out["pesq_wb"] == pytest.approx(4.644, abs=0.01)  # P.862.2 ceiling
    assert out["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert out["si_sdr"] == math.inf
    assert out["ssnr"] == pytest.approx(35.0)
    assert abs(out["llr"]) < 1e-9 and out["wss"] == 0.0
    assert (out["csig"], out["cbak"], out["covl"]) == (5.0, 5.0, 5.0)
    frames = M.vc_frames(clean, SR)
    vc = M.mcd_dtw(frames, frames)
    assert vc["mcd"] == 0.0 and vc["vuv_error"] == 0.0
    assert vc["logf0_rmse_cents"] == 0.0 and vc["logf0_corr"] == pytest.approx(1.0)
    assert vc["f0_gpe"] == 0.0


def test_si_sdr_of_a_known_snr_is_that_snr():
    rng = np.random.default_rng(0)
    s = rng.standard_normal(16000)
    s -= s.mean()
    n = rng.standard_normal(16000)
    n -= n.mean()
    n -= np.dot(n, s) / np.dot(s, s) * s  # orthogonal to s: no leakage into the target
    n *= np.sqrt(np.dot(s, s) / np.dot(n, n)) * 10 ** (-10 / 20)
    torch.testing.assert_close(M.si_sdr(s, s + n), 10.0, atol=1e-9, rtol=0)


def test_si_sdr_ignores_pure_scaling_and_offset():
    rng = np.random.default_rng(1)
    s = rng.standard_normal(8000)
    noisy = s + 0.3 * rng.standard_normal(8000)
    # A scaled copy leaves only float64 rounding as "noise": ~300 dB, the precision limit.
    assert M.si_sdr(s, 3.7 * s) > 250
    assert M.si_sdr(s, -0.2 * s + 5.0) > 250  # sign and DC are ignored too
    torch.testing.assert_close(M.si_sdr(s, 0.01 * noisy), M.si_sdr(s, noisy), atol=1e-9, rtol=0)


def test_segmental_snr_of_a_uniform_error_is_its_closed_form():
    # deg = (1 - g) * ref: every frame has noise energy g^2 times its signal energy,
    # so each frame's SNR is -20 log10 g (clamped to [-10, 35]).
    ref = np.random.default_rng(2).standard_normal(16000)
    torch.testing.assert_close(M.ssnr(ref, 0.9 * ref), 20.0, atol=1e-6, rtol=0)
    torch.testing.assert_close(M.ssnr(ref, 0.7 * ref), -20 * math.log10(0.3), atol=1e-6, rtol=0)
    assert M.ssnr(ref, 0.9999 * ref) == pytest.approx(35.0)  # clamped at the top
    assert M.ssnr(ref, -5 * ref) == pytest.approx(-10.0)  # and at the bottom


def test_mcd_of_a_constant_cepstral_offset_is_its_closed_form():
    rng = np.random.default_rng(3)
    mc = rng.normal(0, 1, (60, 25))
    delta = np.zeros(25)
    delta[1:4] = [0.1, -0.05, 0.02]
    f0 = np.where(np.arange(60) % 10 < 7, 120.0, 0.0)
    ref = M.VCFrames(mc, f0, 24, "p")
    deg = M.VCFrames(mc + delta, 2 * f0, 24, "p")  # one octave up
    out = M.mcd_dtw(ref, deg)
    k = 10 / math.log(10) * math.sqrt(2)
    torch.testing.assert_close(out["mcd"], k * float(np.linalg.norm(delta)), atol=1e-9, rtol=0)
    torch.testing.assert_close(out["logf0_rmse_cents"], 1200.0, atol=1e-6, rtol=0)
    assert out["f0_gpe"] == 1.0  # every voiced frame is an octave off
    assert out["vuv_error"] == 0.0 and out["path_length"] == 60
    unvoiced = deg.f0.copy()
    unvoiced[:9] = 0  # frames 0-6 are voiced in the reference, 7-9 are not: 7 of 60 differ
    out2 = M.mcd_dtw(ref, M.VCFrames(mc, unvoiced, 24, "p"))
    assert out2["vuv_error"] == pytest.approx(7 / 60)


def test_mcd_refuses_features_from_different_protocols():
    a = M.VCFrames(np.zeros((5, 25)), np.zeros(5), 24, "world_harvest_sptk24")
    b = M.VCFrames(np.zeros((5, 25)), np.zeros(5), 24, "world_dio_sptk24")
    with pytest.raises(ValueError, match="extracted differently"):
        M.mcd_dtw(a, b)


def test_mcd_and_f0_metrics_see_a_different_speaker(tiny):
    from speech.audio import read_audio

    kal, slt = (read_audio(tiny.vc_test(s)[0], SR).samples for s in ("kal", "slt"))
    out = M.vc_metrics(slt, kal, SR)
    assert out["mcd"] > 5.0  # cross-gender, different synthesiser
    assert out["logf0_rmse_cents"] > 500  # slt speaks about an octave above kal


# ----------------------------------------------------------------- packages


def test_pesq_and_stoi_wrappers_agree_with_the_packages(speech_pair):
    from pesq import pesq
    from pystoi import stoi

    clean, noisy = speech_pair
    torch.testing.assert_close(M.pesq_wb(clean, noisy, SR), float(pesq(SR, clean, noisy, "wb")),
                               atol=0, rtol=0)
    torch.testing.assert_close(M.stoi(clean, noisy, SR), float(stoi(clean, noisy, SR)),
                               atol=0, rtol=0)
    assert 1.0 < M.pesq_wb(clean, noisy, SR) < 3.5 and 0.6 < M.stoi(clean, noisy, SR) < 1.0


def test_pesq_refuses_a_wrong_rate_and_silence_with_clear_errors():
    x = np.random.default_rng(0).standard_normal(16000)
    with pytest.raises(ValueError, match="16000 Hz"):
        M.pesq_wb(x, x, 8000)
    with pytest.raises(ValueError, match="silence"):
        M.pesq_wb(np.zeros(32000), np.zeros(32000), SR)


def test_pesq_refuses_a_silent_degraded_signal_and_short_signals_with_clear_errors(speech_pair):
    # Both used to fail deep inside cypesq: "cannot convert float NaN to integer" for a
    # silent output (a collapsed model), and a "no speech" message for a short signal.
    clean, _ = speech_pair
    with pytest.raises(ValueError, match="degraded signal is silent .digital silence"):
        M.pesq_wb(clean, np.zeros_like(clean), SR)
    with pytest.raises(ValueError, match="degraded signal is silent .peak"):
        M.pesq_wb(clean, np.full_like(clean, 1e-30), SR)
    with pytest.raises(ValueError, match="0.200 s long; PESQ needs at least 0.25 s"):
        M.pesq_wb(clean[:3200], clean[:3200], SR)


def test_si_sdr_of_a_silent_or_constant_estimate_is_minus_infinity():
    s = np.random.default_rng(4).standard_normal(4000)
    assert M.si_sdr(s, np.zeros_like(s)) == -math.inf  # was +inf: 0/0 read as perfect
    for c in (0.1, 0.3):  # constant: zero after removing the mean, up to float rounding
        assert M.si_sdr(s, np.full_like(s, c)) < -250
    assert M.si_sdr(s, s) == math.inf


def test_vc_metrics_and_speaker_embedding_refuse_nan_samples():
    x = synthetic_voice(SR, 1.0, 0)["wav"].copy()
    x[100:103] = np.nan  # used to end in an IndexError inside the VAD trim / librosa
    with pytest.raises(ValueError, match="3 NaN/inf samples"):
        M.vc_metrics(np.nan_to_num(x), x, SR)
    with pytest.raises(ValueError, match="3 NaN/inf samples"):
        M.speaker_embedding(x, SR)


def test_metrics_refuse_misaligned_signals():
    with pytest.raises(ValueError, match="sample-aligned"):
        M.ssnr(np.ones(1000), np.ones(999))


# ----------------------------------------------------------------- composite


def test_composite_matches_the_independent_reference_on_the_fixed_pair(pair):
    x, y = pair
    ours = M.composite(x, y, SR)
    ref = _reference_composite(x, y, SR, ours["pesq_wb"])
    for key in ("llr", "wss", "ssnr", "csig", "cbak", "covl"):
        torch.testing.assert_close(ours[key], ref[key], atol=1e-9, rtol=1e-9, msg=key)


def test_composite_matches_the_independent_reference_on_speech(speech_pair):
    clean, noisy = speech_pair
    ours = M.composite(clean, noisy, SR)
    ref = _reference_composite(clean, noisy, SR, ours["pesq_wb"])
    for key in ("llr", "wss", "ssnr", "csig", "cbak", "covl"):
        torch.testing.assert_close(ours[key], ref[key], atol=1e-9, rtol=1e-9, msg=key)


def test_composite_parts_match_pinned_third_party_values(pair):
    # pysepm-evo 0.1.1: llr(x, y, 16000, used_for_composite=True), wss(x, y, 16000),
    # SNRseg(x, y, 16000) on this exact pair (see the module docstring).
    x, y = pair
    ours = M.composite(x, y, SR)
    torch.testing.assert_close(ours["llr"], 0.5081209558658097, atol=1e-9, rtol=0)
    torch.testing.assert_close(ours["wss"], 55.74401989618632, atol=1e-9, rtol=0)
    torch.testing.assert_close(ours["ssnr"], 3.9575378129750542, atol=1e-9, rtol=0)


def test_composite_uses_the_published_weights(pair):
    x, y = pair
    out = M.composite(x, y, SR, pesq=2.0)
    expected = 3.093 - 1.029 * out["llr"] + 0.603 * 2.0 - 0.009 * out["wss"]
    torch.testing.assert_close(out["csig"], min(5.0, max(1.0, expected)), atol=1e-12, rtol=0)


# ----------------------------------------------------------------- speaker similarity


def test_speaker_similarity_prefers_the_true_speaker(tiny):
    from speech.audio import read_audio

    emb = {s: M.mean_embedding(M.speaker_embedding(read_audio(p, SR).samples)
                               for p in tiny.vc_train(s)) for s in ("kal", "slt")}
    e = M.speaker_embedding(read_audio(tiny.vc_test("kal")[0], SR).samples)
    assert e.shape == (256,)
    assert M.speaker_similarity(e, e) == pytest.approx(1.0)
    assert M.speaker_similarity(e, emb["kal"]) > M.speaker_similarity(e, emb["slt"]) + 0.1


def test_metrics_are_registered_under_protocol_names():
    from common.metrics import get_metric

    assert get_metric("pesq_wb") is M.pesq_wb
    assert get_metric("composite_hu2008") is M.composite
    assert get_metric("mcd_dtw_sptk24") is M.mcd_dtw


# ----------------------------------------------------------------- CLI


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "speech.metrics", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def test_cli_scores_a_pair_of_files_as_json(tmp_path, speech_pair):
    clean, noisy = speech_pair
    sf.write(tmp_path / "ref.wav", clean, SR, subtype="FLOAT")
    sf.write(tmp_path / "deg.flac", noisy / np.max(np.abs(noisy)), SR)
    proc = _cli(str(tmp_path / "ref.wav"), str(tmp_path / "deg.flac"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("pesq_wb", "stoi", "si_sdr", "ssnr", "csig", "cbak", "covl"):
        assert isinstance(out[key], float)


def test_cli_help_and_clear_errors(tmp_path):
    assert "PESQ" in _cli("--help").stdout
    (tmp_path / "bad.wav").write_text("hello")
    proc = _cli(str(tmp_path / "bad.wav"), str(tmp_path / "bad.wav"))
    assert proc.returncode == 2 and "bad.wav: not a readable WAV file" in proc.stderr


def test_cli_says_why_a_silent_degraded_file_has_no_pesq(tmp_path, speech_pair, capsys):
    clean, _ = speech_pair
    sf.write(tmp_path / "ref.wav", clean, SR, subtype="FLOAT")
    sf.write(tmp_path / "silent.wav", np.zeros_like(clean), SR)
    assert M.main([str(tmp_path / "ref.wav"), str(tmp_path / "silent.wav")]) == 2
    assert "error: pesq_wb: the degraded signal is silent" in capsys.readouterr().err
