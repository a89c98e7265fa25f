"""Parallel oracles: what a frame-wise converter could score on the parallel test set.

The converters in this package never see parallel data. These diagnostics do, on purpose: each
fits a small regressor on DTW-aligned pairs of the *parallel test sentences* (the source and
the target saying the same words) and scores it with the evaluation's own metric
(:func:`speech.metrics.mcd_dtw`), in the feature domain — no vocoder round trip, whose own
floor ``python -m speech.measure ceilings`` reports. They answer "is the target reachable by
any map of these features that keeps the source's timing?", not "how good is a system".

Mel-cepstrum (``mcd``): c1..c24 of a source frame and its ±``width`` neighbours → the target
frame, an MLP trained by squared error and re-aligned on its own predictions a few times
(iterative DTW, the usual way parallel VC is trained: Toda et al. 2007 §4 for the GMM,
Desai et al. 2010 for the ANN). Scored two ways:

* ``held_out``: k-fold over sentences — a parallel converter trained on the other sentences;
* ``fit``: trained on all sentences and scored on the same ones (memorisation: a lower bound
  on the MCD of any frame-wise map of these features).

Log-F0 (``logf0_corr``): the target's interpolated log-F0 from a ±``f0_width``-frame source
context (cepstra, interpolated log-F0, voicing), same folds; the source's voicing is kept.
Beside them: the unconverted source, the global per-coefficient affine map of the cepstra
(what speaker means and variances alone buy) and the log-Gaussian F0 transform of METRICS.md,
whose Pearson correlation equals the source's on the same alignment (it is affine in ln F0).
All F0 scores of a sentence use the alignment of its held-out cepstra with the target, as a
converted utterance would be aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from speech.features import convert_f0, logf0_stats, norm_stats
from speech.metrics import VCFrames, dtw_path, logf0_scores, mcd_dtw


@dataclass(frozen=True)
class OracleSettings:
    folds: int = 2
    width: int = 4           # cepstral context: ±4 frames (±20 ms at 5 ms hop)
    hidden: int = 512
    steps: int = 1500        # per alignment round
    rounds: int = 3          # iterative DTW re-alignments
    f0_width: int = 40       # log-F0 context: ±40 frames (±200 ms, about a syllable)
    f0_stride: int = 4
    f0_steps: int = 3000
    batch: int = 512
    seed: int = 0


def _context(x: np.ndarray, width: int, stride: int = 1) -> np.ndarray:
    """Stack frames t − width .. t + width (every ``stride``-th; edges repeated) per row."""
    p = np.pad(x, ((width, width), (0, 0)), mode="edge")
    return np.concatenate([p[i:i + len(x)] for i in range(0, 2 * width + 1, stride)], axis=1)


def _interp_logf0(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Continuous ln F0 (linear through unvoiced gaps) and the voicing flags."""
    voiced = f0 > 0
    if voiced.sum() < 2:
        raise ValueError(f"an utterance has {int(voiced.sum())} voiced frames; need 2")
    t = np.arange(len(f0))
    return np.interp(t, t[voiced], np.log(f0[voiced])), voiced


def _train(x: np.ndarray, y: np.ndarray, hidden: int, steps: int, batch: int,
           gen: torch.Generator, dropout: float = 0.0, weight_decay: float = 0.0) -> nn.Module:
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    net = nn.Sequential(nn.Linear(xt.shape[1], hidden), nn.GELU(), nn.Dropout(dropout),
                        nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, yt.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (batch,), generator=gen)
        loss = (net(xt[idx]) - yt[idx]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


def _predict(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.as_tensor(x, dtype=torch.float32)).numpy().astype(np.float64)


def _with_cepstra(frames: VCFrames, cep: np.ndarray) -> VCFrames:
    """``frames`` with c1.. replaced by ``cep`` (c0 kept: MCD skips it)."""
    mcep = frames.mcep.copy()
    mcep[:, 1:] = cep
    return replace(frames, mcep=mcep)


def parallel_oracle(source: Sequence[VCFrames], target: Sequence[VCFrames],
                    settings: OracleSettings = OracleSettings()) -> dict[str, Any]:
    """Score the oracles on parallel utterances ``source[k]``, ``target[k]`` (same sentence)."""
    if len(source) != len(target):
        raise ValueError(f"{len(source)} source utterances but {len(target)} target utterances")
    if len(source) < 2 * settings.folds:
        raise ValueError(f"{len(source)} sentences are too few for {settings.folds}-fold "
                         "held-out scoring")
    with torch.random.fork_rng(devices=[]):  # dropout draws; the caller's RNG is left alone
        torch.manual_seed(settings.seed)
        return _score(source, target, settings)


def _folds(n: int, folds: int):
    """``(train, test)`` sentence indices of each fold (test: every ``folds``-th sentence)."""
    for fold in range(folds):
        test = list(range(fold, n, folds))
        yield [k for k in range(n) if k not in test], test


def _score(source: Sequence[VCFrames], target: Sequence[VCFrames], s: OracleSettings
           ) -> dict[str, Any]:
    n = len(source)
    gen = torch.Generator().manual_seed(s.seed)
    ns = norm_stats(f.mcep[:, 1:] for f in source)
    nt = norm_stats(f.mcep[:, 1:] for f in target)
    ctx = [_context(ns.normalize(f.mcep[:, 1:]), s.width) for f in source]
    affine = [nt.denormalize(ns.normalize(f.mcep[:, 1:])) for f in source]

    def fit_cepstra(train: list[int]) -> tuple[nn.Module, dict[int, tuple]]:
        pred = {k: affine[k] for k in train}
        for _ in range(s.rounds):
            paths = {k: dtw_path(target[k].mcep[:, 1:], pred[k]) for k in train}
            x = np.concatenate([ctx[k][paths[k][1]] for k in train])
            y = np.concatenate([nt.normalize(target[k].mcep[paths[k][0], 1:]) for k in train])
            net = _train(x, y, s.hidden, s.steps, s.batch, gen)
            pred = {k: nt.denormalize(_predict(net, ctx[k])) for k in train}
        return net, paths

    def mcd(k: int, cep: np.ndarray) -> float:
        return mcd_dtw(target[k], _with_cepstra(source[k], cep))["mcd"]

    everything = list(range(n))
    net_all, paths = fit_cepstra(everything)  # the best alignments, reused by the F0 oracle
    fit = [mcd(k, nt.denormalize(_predict(net_all, ctx[k]))) for k in everything]
    held_cep: dict[int, np.ndarray] = {}
    for train, test in _folds(n, s.folds):
        net, _ = fit_cepstra(train)
        held_cep.update({k: nt.denormalize(_predict(net, ctx[k])) for k in test})
    held = [mcd(k, held_cep[k]) for k in everything]

    # ---- log-F0
    lf_src = [_interp_logf0(f.f0) for f in source]
    lf_tgt = [_interp_logf0(f.f0) for f in target]
    zs = norm_stats(lf[voiced, None] for lf, voiced in lf_src)
    zt = norm_stats(lf[voiced, None] for lf, voiced in lf_tgt)
    feats = [_context(np.concatenate([ns.normalize(f.mcep[:, 1:]), zs.normalize(lf[:, None]),
                                      v[:, None]], axis=1), s.f0_width, s.f0_stride)
             for f, (lf, v) in zip(source, lf_src, strict=True)]

    def fit_f0(train: list[int]) -> nn.Module:
        x, y = [], []
        for k in train:
            i, j = paths[k]
            keep = lf_tgt[k][1][i]  # frames the target voices
            x.append(feats[k][j][keep])
            y.append(zt.normalize(lf_tgt[k][0][i][keep, None]))
        return _train(np.concatenate(x), np.concatenate(y), s.hidden // 2, s.f0_steps,
                      s.batch, gen, dropout=0.2, weight_decay=1e-2)

    def f0_of(net: nn.Module, k: int) -> np.ndarray:
        lf = zt.denormalize(_predict(net, feats[k]))[:, 0]
        return np.where(source[k].f0 > 0, np.exp(lf), 0.0)

    # Every F0 variant of a sentence is scored on one alignment: the held-out cepstra's.
    scored = {k: dtw_path(target[k].mcep[:, 1:], held_cep[k]) for k in everything}

    def corr(k: int, f0: np.ndarray) -> float:
        i, j = scored[k]
        return logf0_scores(target[k].f0[i], f0[j])["logf0_corr"]

    stats_src = logf0_stats(f.f0 for f in source)
    stats_tgt = logf0_stats(f.f0 for f in target)
    f0_net_all = fit_f0(everything)
    f0_held: dict[int, np.ndarray] = {}
    for train, test in _folds(n, s.folds):
        net = fit_f0(train)
        f0_held.update({k: f0_of(net, k) for k in test})

    def mean(values: list[float]) -> float:
        return float(np.nanmean(values))

    return {
        "sentences": n,
        "mcd": {
            "source": mean([mcd_dtw(target[k], source[k])["mcd"] for k in everything]),
            "global_affine": mean([mcd(k, affine[k]) for k in everything]),
            "regressor_held_out": mean(held),
            "regressor_fit": mean(fit),
        },
        "logf0_corr": {
            "source": mean([corr(k, source[k].f0) for k in everything]),
            "log_gaussian": mean([corr(k, convert_f0(source[k].f0, stats_src, stats_tgt))
                                  for k in everything]),
            "regressor_held_out": mean([corr(k, f0_held[k]) for k in everything]),
            "regressor_fit": mean([corr(k, f0_of(f0_net_all, k)) for k in everything]),
        },
        "settings": {**s.__dict__},
    }
