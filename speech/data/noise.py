"""Procedural noise, active speech level, SNR mixing and room reverberation.

Everything SynthVoices needs to turn clean utterances into enhancement pairs, with no
recorded noise: eight families of noise drawn from a seeded ``numpy.random.Generator``
(:data:`NOISE_FAMILIES`), the active speech level of ITU-T P.56 (method B) so that an
SNR means "speech while it is active vs noise" as in VoiceBank+DEMAND, exact mixing at a
requested SNR, and pyroomacoustics image-source room impulse responses.

Every noise is returned as float64 ``[T]`` with RMS exactly 1, so the SNR gain alone sets
its level. Signals are float ``[T]`` mono at ``sr`` throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

__all__ = [
    "NOISE_FAMILIES",
    "NoiseFamily",
    "Room",
    "active_power",
    "make_noise",
    "mix_at_snr",
    "reverberate",
    "room_impulse_response",
    "sample_room",
]

# --------------------------------------------------------------------------- helpers


def _unit_rms(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x**2)))
    if not np.isfinite(rms) or rms <= 0:
        raise ValueError("generated noise is silent or non-finite")
    return x / rms


def _coloured(n: int, sr: int, rng: np.random.Generator, exponent: float,
              f_lo: float = 20.0) -> np.ndarray:
    """Gaussian noise with power spectral density ∝ 1/f^exponent above ``f_lo`` [T].

    Shaped in the frequency domain (exact slope at every bin, unlike IIR approximations);
    below ``f_lo`` the spectrum is held flat so brown noise does not drift like a random
    walk, and DC is removed.
    """
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    shape = np.maximum(f, f_lo) ** (-exponent / 2.0)  # amplitude ∝ f^(-a/2)
    shape[0] = 0.0
    return np.fft.irfft(spec * shape, n)


def _fade(n: int, sr: int, seconds: float = 0.01) -> np.ndarray:
    """Raised-cosine on/off ramps [n] (avoid clicks at tone-burst edges)."""
    env = np.ones(n)
    k = min(int(seconds * sr), n // 2)
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)
        env[:k] *= ramp
        env[n - k :] *= ramp[::-1]
    return env


# --------------------------------------------------------------------------- families


def _white(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
           ) -> np.ndarray:
    return rng.standard_normal(n)


def _pink(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
          ) -> np.ndarray:
    return _coloured(n, sr, rng, 1.0)  # -3.01 dB per octave


def _brown(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
           ) -> np.ndarray:
    return _coloured(n, sr, rng, 2.0)  # -6.02 dB per octave


def _babble(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
            ) -> np.ndarray:
    """3-6 other talkers (utterances from ``others``), each looped from a random offset."""
    if not others:
        raise ValueError("babble noise needs other utterances (others=[...])")
    pool = [np.asarray(o, dtype=np.float64) for o in others if len(o) > 0]
    k = int(rng.integers(min(3, len(pool)), min(6, len(pool)) + 1))
    picks = rng.choice(len(pool), size=k, replace=False)
    out = np.zeros(n)
    for i in picks:
        talker = pool[int(i)]
        talker = talker / np.sqrt(active_power(talker, sr))
        reps = int(np.ceil((n + len(talker)) / len(talker)))
        start = int(rng.integers(0, len(talker)))
        looped = np.tile(talker, reps)[start : start + n]
        out += looped * 10 ** (rng.uniform(-3.0, 3.0) / 20)  # talkers at unequal distances
    return out


def _hum(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
         ) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and its harmonics, odd ones emphasised (transformer buzz)."""
    f0 = float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / sr
    k_max = int(min(40, (sr / 2 - 100) // f0))
    tilt = rng.uniform(0.8, 1.6)
    out = np.zeros(n)
    for k in range(1, k_max + 1):
        # The fundamental is always the strongest line; upper harmonics fall ~k^-tilt.
        amp = 1.0 if k == 1 else k ** (-tilt) * rng.uniform(0.2, 0.9) * (1.5 if k % 2 else 1.0)
        out += amp * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    wobble = 1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3))
    out *= wobble
    return out + 10 ** (-45 / 20) * np.std(out) * rng.standard_normal(n)


def _traffic(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
             ) -> np.ndarray:
    """Traffic-like: low-passed rumble, slow amplitude modulation, passing vehicles."""
    cutoff = rng.uniform(250.0, 900.0)
    sos = butter(4, cutoff, "low", fs=sr, output="sos")
    rumble = sosfilt(sos, _coloured(n, sr, rng, 1.0))
    t = np.arange(n) / sr
    env = np.ones(n)
    for _ in range(3):  # slow swells, 0.05-0.5 Hz
        env += rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t
                                              + rng.uniform(0, 2 * np.pi))
    duration = n / sr
    for _ in range(int(rng.poisson(max(duration / 3.0, 0.5))) + 1):  # vehicles passing by
        centre, width = rng.uniform(0, duration), rng.uniform(0.6, 2.5)
        env += rng.uniform(0.5, 2.0) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    engine = np.sin(2 * np.pi * rng.uniform(25, 70) * t) * 0.3 * np.std(rumble)
    return (rumble + engine) * np.maximum(env, 0.05)


def _clatter(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
             ) -> np.ndarray:
    """Random transients (dishes, tools): Poisson-timed decaying resonant bursts."""
    out = 10 ** (-35 / 20) * _coloured(n, sr, rng, 1.0)  # a faint room floor between hits
    rate = rng.uniform(2.0, 8.0)  # events per second
    count = int(rng.poisson(rate * n / sr)) + 1
    for _ in range(count):
        start = int(rng.integers(0, n))
        decay = rng.uniform(0.005, 0.04)  # seconds
        length = min(int(decay * 6 * sr), n - start)
        if length < 8:
            continue
        t = np.arange(length) / sr
        burst = rng.standard_normal(length) * 0.3
        for _ in range(int(rng.integers(1, 4))):  # a few ringing modes of the object
            burst += np.sin(2 * np.pi * rng.uniform(800, 6000) * t + rng.uniform(0, 6.3))
        # Levels spread over 20 dB; keep crest factors moderate (no single huge spike).
        out[start : start + length] += burst * np.exp(-t / decay) * 10 ** (rng.uniform(-20, 0)
                                                                            / 20)
    return out


def _alarm(n: int, sr: int, rng: np.random.Generator, others: Sequence[np.ndarray] | None
           ) -> np.ndarray:
    """Tonal alarms: beeping, two-tone or swept sirens, with a few harmonics."""
    t = np.arange(n) / sr
    kind = int(rng.integers(0, 3))
    if kind == 0:  # beeping: on/off bursts of one tone
        freq = np.full(n, rng.uniform(800, 3200))
        period, duty = rng.uniform(0.2, 1.0), rng.uniform(0.3, 0.7)
        gate = ((t % period) < duty * period).astype(np.float64)
        smooth = np.hanning(int(0.01 * sr) + 1)
        gate = np.convolve(gate, smooth / smooth.sum(), mode="same")  # 10 ms soft edges
    elif kind == 1:  # two-tone (hi-lo) siren
        f1 = rng.uniform(500, 1500)
        f2 = f1 * rng.uniform(1.2, 1.6)
        half = rng.uniform(0.3, 0.8)
        freq = np.where((t % (2 * half)) < half, f1, f2)
        gate = np.ones(n)
    else:  # wailing siren: frequency swept sinusoidally
        lo, hi = rng.uniform(500, 900), rng.uniform(1200, 2000)
        rate = rng.uniform(0.15, 1.0)
        freq = lo + (hi - lo) * 0.5 * (1 - np.cos(2 * np.pi * rate * t + rng.uniform(0, 6.3)))
        gate = np.ones(n)
    phase = 2 * np.pi * np.cumsum(freq) / sr  # integrate frequency: no phase jumps
    tone = np.zeros(n)
    for k, amp in ((1, 1.0), (2, rng.uniform(0.1, 0.4)), (3, rng.uniform(0.1, 0.5))):
        ok = (k * freq) < sr / 2 - 200
        tone += np.where(ok, amp * np.sin(k * phase), 0.0)
    return tone * gate * _fade(n, sr) + 10 ** (-50 / 20) * rng.standard_normal(n)


@dataclass(frozen=True)
class NoiseFamily:
    name: str
    description: str
    generate: Callable[[int, int, np.random.Generator, Sequence[np.ndarray] | None], np.ndarray]
    needs_others: bool = False  # babble mixes other utterances of the corpus


NOISE_FAMILIES: dict[str, NoiseFamily] = {
    f.name: f
    for f in (
        NoiseFamily("white", "white Gaussian noise (flat spectrum)", _white),
        NoiseFamily("pink", "pink noise, 1/f (-3 dB per octave)", _pink),
        NoiseFamily("brown", "brown noise, 1/f^2 (-6 dB per octave)", _brown),
        NoiseFamily("babble", "3-6 other talkers of the same split", _babble, True),
        NoiseFamily("hum", "50/60 Hz mains hum with harmonics", _hum),
        NoiseFamily("traffic", "low-passed rumble, slow AM, passing vehicles", _traffic),
        NoiseFamily("clatter", "random decaying resonant transients", _clatter),
        NoiseFamily("alarm", "tonal alarms: beeps, two-tone and swept sirens", _alarm),
    )
}


def make_noise(
    family: str,
    n: int,
    sr: int,
    rng: np.random.Generator,
    others: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """``n`` samples of ``family`` noise at ``sr``: float64 ``[n]``, RMS exactly 1.

    ``others`` (list of float ``[T_i]``) are the utterances babble draws its talkers from;
    the other families ignore it. The result depends only on ``rng``'s state.
    """
    if family not in NOISE_FAMILIES:
        raise ValueError(f"unknown noise family {family!r}; choose from {sorted(NOISE_FAMILIES)}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return _unit_rms(NOISE_FAMILIES[family].generate(int(n), int(sr), rng, others))


# --------------------------------------------------------------------------- levels


def active_power(x: np.ndarray, sr: int, margin_db: float = 15.9) -> float:
    """Mean power of ``x`` [T] while speech is active (ITU-T P.56 method B, simplified).

    The envelope is |x| smoothed twice with a 30 ms time constant; a sample is active if
    the envelope exceeded a threshold ``c`` within the last 200 ms (hangover). P.56 picks
    the threshold at which the active power sits ``margin_db`` (15.9 dB) above ``c``²;
    here it is found on a fine log grid of thresholds and interpolated. A stationary
    signal is active throughout, so for noise this is just the mean power.
    """
    x = np.asarray(x, dtype=np.float64)
    energy = float(np.sum(x**2))
    if len(x) == 0 or energy <= 0:
        return 0.0
    g = np.exp(-1.0 / (0.03 * sr))
    env = lfilter([1 - g], [1, -g], lfilter([1 - g], [1, -g], np.abs(x)))
    hang = max(1, int(round(0.2 * sr)))
    # Running max over the trailing 200 ms: active(c) <=> held >= c.
    held = maximum_filter1d(env, size=hang, origin=(hang - 1) // 2, mode="nearest")
    top = float(held.max())
    thresholds = top * 10 ** (-np.arange(0.0, 100.0, 0.25) / 20)  # 0 to -100 dB
    held_sorted = np.sort(held)
    active = len(x) - np.searchsorted(held_sorted, thresholds, side="left")  # count >= c
    active = np.maximum(active, 1)
    a_db = 10 * np.log10(energy / active)  # active power in dB for each threshold
    c_db = 20 * np.log10(thresholds)
    diff = a_db - c_db  # grows as the threshold falls
    above = np.nonzero(diff >= margin_db)[0]
    if len(above) == 0:
        return energy / len(x)
    j = int(above[0])
    if j == 0:
        return float(10 ** (a_db[0] / 10))
    # Interpolate between the last threshold below the margin and the first above it.
    w = (margin_db - diff[j - 1]) / (diff[j] - diff[j - 1])
    return float(10 ** ((a_db[j - 1] + w * (a_db[j] - a_db[j - 1])) / 10))


def mix_at_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float, sr: int
) -> tuple[np.ndarray, float]:
    """``speech + gain * noise`` with active-speech-to-noise ratio exactly ``snr_db``.

    ``speech`` and ``noise`` are float ``[T]`` of equal length. The SNR is the ratio of
    :func:`active_power` of ``speech`` to the mean power of the scaled noise (VoiceBank's
    convention: silence in the utterance does not dilute the speech level). Returns
    ``(noisy [T] float64, gain)``.
    """
    speech = np.asarray(speech, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if speech.shape != noise.shape:
        raise ValueError(f"speech {speech.shape} and noise {noise.shape} must have one shape")
    p_speech = active_power(speech, sr)
    p_noise = float(np.mean(noise**2))
    if p_speech <= 0 or p_noise <= 0:
        raise ValueError("cannot set an SNR with silent speech or silent noise")
    gain = float(np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10))))
    return speech + gain * noise, gain


# --------------------------------------------------------------------------- rooms


@dataclass(frozen=True)
class Room:
    """A shoebox room for the image-source model (metres, seconds)."""

    dims: tuple[float, float, float]
    source: tuple[float, float, float]
    mic: tuple[float, float, float]
    rt60: float  # the Sabine target the wall absorption was chosen for

    def impulse_response(self, sr: int) -> np.ndarray:
        """Room impulse response ``[L]`` float64, direct path at index 0 with value 1.

        The image-source RIR starts with the propagation delay and a fractional-delay
        filter around the direct path; cutting it at the direct path's peak keeps the
        reverberant signal time-aligned with the dry one (the enhancement target).
        """
        import pyroomacoustics as pra

        absorption, max_order = pra.inverse_sabine(self.rt60, list(self.dims))
        # Capped: the cost grows with the cube of the order, and beyond ~80 reflections
        # the remaining tail is far below the direct path (the measured RT60 shortens a
        # little for long RT60s in small rooms).
        room = pra.ShoeBox(list(self.dims), fs=int(sr), materials=pra.Material(absorption),
                           max_order=int(min(max_order, _MAX_ORDER)))
        room.add_source(list(self.source))
        room.add_microphone(list(self.mic))
        room.compute_rir()
        rir = np.asarray(room.rir[0][0], dtype=np.float64)
        peak = int(np.argmax(np.abs(rir)))
        rir = rir[peak:]
        return rir / rir[0]


_MAX_ORDER = 80  # image-source reflection order cap


def sample_room(rng: np.random.Generator, rt60: float) -> Room:
    """A random shoebox room with reverberation time ``rt60`` [s], talker 1-3 m from the mic."""
    import pyroomacoustics as pra

    for _ in range(200):
        dims = (rng.uniform(3.5, 10.0), rng.uniform(3.0, 8.0), rng.uniform(2.5, 4.0))
        try:
            pra.inverse_sabine(rt60, list(dims))
        except ValueError:  # RT60 too short for this room (absorption would exceed 1)
            continue
        for _ in range(50):
            src = tuple(rng.uniform(0.5, d - 0.5) for d in dims)
            mic = tuple(rng.uniform(0.5, d - 0.5) for d in dims)
            dist = float(np.linalg.norm(np.subtract(src, mic)))
            if 1.0 <= dist <= 3.0:
                return Room(tuple(round(float(d), 3) for d in dims),  # type: ignore[arg-type]
                            tuple(round(float(v), 3) for v in src),  # type: ignore[arg-type]
                            tuple(round(float(v), 3) for v in mic),  # type: ignore[arg-type]
                            float(rt60))
    raise RuntimeError(f"could not place a room for rt60={rt60}")


def room_impulse_response(rng: np.random.Generator, sr: int, rt60: float = 0.5) -> np.ndarray:
    """The impulse response ``[L]`` of a random room (:func:`sample_room`) at ``sr``."""
    return sample_room(rng, rt60).impulse_response(sr)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` [T] convolved with ``rir`` [L], cut to length T, with the energy of ``x``.

    ``rir[0]`` is taken as the direct path, so the output stays aligned with the input;
    keeping the energy means a reverberated utterance keeps its level.
    """
    x = np.asarray(x, dtype=np.float64)
    y = fftconvolve(x, np.asarray(rir, dtype=np.float64))[: len(x)]
    e_in, e_out = float(np.sum(x**2)), float(np.sum(y**2))
    if e_out <= 0:
        return y
    return y * np.sqrt(e_in / e_out)
