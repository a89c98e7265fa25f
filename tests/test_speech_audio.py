"""speech.audio: reading anything soundfile reads, bad-input refusals, named resampling,
atomic writes, chunked overlap-add in flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speech.audio import (
    RESAMPLE_METHODS,
    AudioStream,
    AudioTooLongError,
    CorruptAudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    UnsupportedAudioError,
    apply_chunked,
    chunk_plan,
    overlap_add,
    process_file,
    read_audio,
    resample,
    write_audio,
)

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _tone(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg"])
def test_write_then_read_roundtrips_each_supported_format(tmp_path, ext):
    x = _tone(440, 16000)
    path = write_audio(tmp_path / f"a{ext}", x, 16000)
    a = read_audio(path)
    assert a.sr == 16000 and a.source_sr == 16000 and a.resample_method is None
    if ext == ".ogg":  # lossy: compare waveforms by correlation
        n = min(len(a.samples), len(x))
        assert np.corrcoef(a.samples[:n], x[:n])[0, 1] > 0.99
    else:
        torch.testing.assert_close(a.samples, x, atol=1 / 32768, rtol=0)


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path):
    left, right = _tone(300, 16000), _tone(500, 16000, amp=0.1)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    a = read_audio(tmp_path / "s.wav")
    torch.testing.assert_close(a.samples, (left + right) / 2, atol=1e-7, rtol=0)
    assert a.source_channels == 2 and any("mono" in n for n in a.notes)


@pytest.mark.parametrize("method", sorted(RESAMPLE_METHODS))
def test_every_named_resampler_keeps_a_tone_and_the_length_convention(method):
    x = _tone(1000, 48000, seconds=0.5)
    y = resample(x, 48000, 16000, method)
    assert len(y) == 8000  # ceil(T * 16000 / 48000)
    spec = np.abs(np.fft.rfft(y[1000:7000] * np.hanning(6000)))
    peak_hz = np.argmax(spec) * 16000 / 6000
    assert abs(peak_hz - 1000) < 3
    rms = float(np.sqrt(np.mean(y[1000:7000] ** 2)))
    assert abs(20 * np.log10(rms / (0.3 / np.sqrt(2)))) < 0.1


def test_resampling_with_an_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="kaiser_best"):
        resample(np.zeros(10), 48000, 16000, "linear")


def test_zero_length_file_is_refused_naming_the_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match=r"empty\.wav: file is empty \(0 bytes\)"):
        read_audio(p)


def test_header_only_wav_is_refused_as_having_no_samples(tmp_path):
    p = tmp_path / "header.wav"
    sf.write(p, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(EmptyAudioError, match="no samples"):
        read_audio(p)


def test_text_file_named_wav_is_refused_as_text(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("not audio at all\n")
    with pytest.raises(CorruptAudioError, match=r"notes\.wav: not a readable WAV file \(text"):
        read_audio(p)


def test_truncated_wav_is_refused_as_corrupt(tmp_path):
    p = tmp_path / "cut.wav"
    sf.write(p, _tone(200, 16000), 16000)
    p.write_bytes(p.read_bytes()[:30])
    with pytest.raises(CorruptAudioError, match="cut.wav"):
        read_audio(p)


def test_unsupported_extension_and_missing_file_are_refused(tmp_path):
    p = tmp_path / "song.mp3"
    p.write_bytes(b"ID3")
    with pytest.raises(UnsupportedAudioError, match=r"\.wav, \.flac, \.ogg"):
        read_audio(p)
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        read_audio(tmp_path / "nope.wav")


def test_8bit_8khz_stereo_is_accepted_upsampled_and_noted(tmp_path):
    t = np.arange(16000) / 8000
    st = np.stack([0.4 * np.sin(2 * np.pi * 300 * t), 0.4 * np.sin(2 * np.pi * 300 * t)], 1)
    sf.write(tmp_path / "u8.wav", st, 8000, subtype="PCM_U8")
    a = read_audio(tmp_path / "u8.wav", 16000)
    assert (a.sr, a.source_sr, a.source_channels) == (16000, 8000, 2)
    assert a.source_format == "WAV/PCM_U8" and a.resample_method == "kaiser_best"
    assert len(a.samples) == 32000
    assert any("nothing above 4000 Hz" in n for n in a.notes)
    assert any("8-bit" in n for n in a.notes)
    # 8-bit quantisation: the tone survives with ~48 dB SNR.
    ref = 0.4 * np.sin(2 * np.pi * 300 * np.arange(32000) / 16000)
    err = a.samples[1000:-1000] - ref[1000:-1000]
    assert 10 * np.log10(np.mean(ref**2) / np.mean(err**2)) > 30


def test_48khz_file_is_resampled_with_the_method_recorded(tmp_path):
    sf.write(tmp_path / "hi.wav", _tone(440, 48000), 48000)
    a = read_audio(tmp_path / "hi.wav", 16000, method="soxr_hq")
    assert (a.sr, a.source_sr, a.resample_method, len(a.samples)) == (16000, 48000, "soxr_hq",
                                                                     16000)


def test_nan_samples_are_refused_with_their_time_or_zeroed_on_request(tmp_path):
    x = _tone(300, 16000)
    x[8000:8004] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError, match=r"4 non-finite sample\(s\).*0\.500 s"):
        read_audio(tmp_path / "nan.wav")
    a = read_audio(tmp_path / "nan.wav", nonfinite="zero")
    assert np.isfinite(a.samples).all() and (a.samples[8000:8004] == 0).all()


def test_silent_file_is_refused_unless_allowed(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(16000), 16000)
    with pytest.raises(SilentAudioError, match="digital silence"):
        read_audio(tmp_path / "z.wav")
    assert read_audio(tmp_path / "z.wav", allow_silent=True).duration == 1.0


def test_long_file_is_refused_by_read_audio_pointing_to_process_file(tmp_path):
    sf.write(tmp_path / "long.wav", _tone(100, 1000, seconds=12), 1000)
    with pytest.raises(AudioTooLongError, match="process_file"):
        read_audio(tmp_path / "long.wav", max_seconds=10)


def test_write_audio_refuses_nan_and_leaves_the_existing_file(tmp_path):
    p = write_audio(tmp_path / "keep.wav", _tone(200, 16000), 16000)
    before = p.read_bytes()
    bad = _tone(200, 16000)
    bad[10] = np.nan
    with pytest.raises(NonFiniteAudioError):
        write_audio(p, bad, 16000)
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.wav"]  # no temp file left


@pytest.mark.parametrize("src", [44100, 8000, 16000])
def test_stream_segments_equal_slices_of_the_whole_resampled_file(tmp_path, src):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(src * 2)).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, src, subtype="FLOAT")
    whole = resample(x, src, 16000)
    with AudioStream(tmp_path / "x.wav", 16000) as s:
        assert s.frames == len(whole)
        pieces = [s.read(a, min(a + 3001, s.frames)) for a in range(0, s.frames, 3001)]
    torch.testing.assert_close(np.concatenate(pieces), whole, atol=1e-6, rtol=0)


def test_chunk_plan_covers_the_signal_with_full_overlaps():
    plan = chunk_plan(10_000, 3000, 500)
    assert plan[0].start == 0 and plan[-1].end == 10_000
    for a, b in zip(plan[:-1], plan[1:], strict=True):
        assert a.end - b.start == 500
    assert plan[-1].end - plan[-1].start > 500
    assert chunk_plan(100, 3000, 500) == chunk_plan(100, 100, 0)[:1]
    with pytest.raises(ValueError):
        chunk_plan(100, 10, 10)


def test_overlap_add_of_an_identity_model_reproduces_the_input_exactly():
    x = np.random.default_rng(1).standard_normal(50_001).astype(np.float32)
    torch.testing.assert_close(apply_chunked(x, lambda c: c, 8000, 1000), x, atol=1e-6, rtol=0)
    # The complementary fades sum to one, so a linear model is applied exactly everywhere.
    y = apply_chunked(np.ones(20_000, np.float32), lambda c: 2 * c, 4000, 800)
    torch.testing.assert_close(y, np.full(20_000, 2.0, np.float32))


def test_overlap_add_refuses_a_model_that_changes_the_length():
    plan = chunk_plan(10_000, 4000, 500)
    with pytest.raises(ValueError, match="length-preserving"):
        list(overlap_add((np.zeros(10) for _ in plan), plan, 500))


def test_process_file_writes_the_model_output_at_the_model_rate(tmp_path):
    sf.write(tmp_path / "in.wav", _tone(440, 22050, seconds=3), 22050)
    rep = process_file(tmp_path / "in.wav", tmp_path / "out.flac", lambda a: 0.5 * a, 16000,
                       chunk_seconds=1.0, overlap_seconds=0.1)
    out, sr = sf.read(tmp_path / "out.flac", dtype="float32")
    ref = 0.5 * read_audio(tmp_path / "in.wav", 16000).samples
    assert (sr, rep.chunks, rep.resample_method) == (16000, 4, "kaiser_best")
    torch.testing.assert_close(out, ref, atol=2 / 32768, rtol=0)


_FLAT_MEMORY_CHILD = r"""
import json, resource, sys
from speech.audio import process_file  # no resampling needed: torch is never imported
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rep = process_file(sys.argv[1], sys.argv[2], lambda a: a * 0.5, 16000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mb": (after - before) / 1024, "chunks": rep.chunks}))
"""


def test_a_30_minute_file_is_processed_in_flat_memory(tmp_path):
    # 16 kHz keeps the test fast; resampled streaming is checked against whole-file
    # resampling above, and `python -m speech.measure bad-input` runs a 48 kHz one.
    long = tmp_path / "long.wav"
    block = (0.2 * np.sin(2 * np.pi * 330 * np.arange(16000 * 60) / 16000)).astype(np.float32)
    with sf.SoundFile(long, "w", samplerate=16000, channels=1, subtype="PCM_16") as f:
        for _ in range(30):
            f.write(block)
    with pytest.raises(AudioTooLongError, match="30.0 minutes"):
        read_audio(long, 16000)
    proc = subprocess.run([sys.executable, "-c", _FLAT_MEMORY_CHILD, str(long),
                           str(tmp_path / "out.wav")], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # Loading the file whole would take 1800 s * 16000 * 4 B = 115 MB as float32 (and
    # float64 copies on the way); the stream holds one 30 s chunk (1.9 MB) at a time.
    assert result["growth_mb"] < 40, result
    assert result["chunks"] == 61
    info = sf.info(tmp_path / "out.wav")
    assert (info.samplerate, info.frames) == (16000, 1800 * 16000)
