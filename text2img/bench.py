"""Speed of the Stage-I training step against the way the official StackGAN port runs it.

:func:`bench_stackgan_step` times, in one process and interleaved (so a busy machine slows
both alike), one Stage-I step (D update + G update) of the paper's network (64 px, batch
64, G width 128 → 1024 channels at 4×4, D width 64, 1024-d text embeddings, combined head,
BCE, D scoring real/right, real/wrong and fake/right pairs):

``reference``
    what the official StackGAN PyTorch port does each iteration (``trainer.py``): eager
    fp32, NCHW, the literal nearest-upsample + 3×3 conv up-blocks, one G forward whose
    fakes serve both updates, real features computed once for the right and wrong pairs,
    ``nn.BCELoss`` on sigmoid outputs, D weight gradients computed during G's backward,
    the KL term as ``KL_loss`` writes it, ``torch.optim.Adam`` (default implementation).
    Batches are ready-made tensors (its loader runs in worker processes).
``ours``
    the training step of ``python -m text2img.train`` itself: the phases of
    :func:`text2img.train.build_phases` run by :func:`common.training.train`, including
    its data source, with the runtime's precision and memory format.

Both use the identical architecture (the same modules, same initial weights); only the
execution differs. Besides the headline (bf16 autocast + channels_last + fused up-blocks)
the ``variants`` section times our step with each switch on its own.

    python -c "from text2img.bench import bench_stackgan_step as b; print(b())"
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from common.benchmark import NullTracker
from common.runtime import cpu_has_native_bf16, setup_runtime
from common.training import train

__all__ = ["bench_stackgan_step"]

BATCH, RES, EMBED, N_TRAIN = 64, 64, 1024, 256


def _config(precision: str, channels_last: bool, fused: bool):
    from common.config import load_config
    from text2img.train import StackGANConfig

    return load_config(StackGANConfig, None, [
        f"model.stage1_res={RES}", "model.stage2_res=128", "model.g_width=128",
        "model.d_width=64", "model.cond_dim=128", "model.z_dim=100", "model.d_cond_ch=128",
        "model.d_head=combined", "loss.kind=bce", f"data.batch_size={BATCH}",
        # the official code feeds the embedding raw and uses a batch-norm D
        "model.cond_standardize=false", "model.d_norm=bn",
        f"model.fused_upsample={str(fused).lower()}", f"runtime.precision={precision}",
        f"runtime.channels_last={str(channels_last).lower()}", "runtime.device=cpu"])


def _corpus(seed: int = 0):
    from text2img.train import Corpus

    gen = torch.Generator().manual_seed(seed)
    images = {r: torch.randint(0, 256, (N_TRAIN, 3, r, r), generator=gen, dtype=torch.uint8)
              for r in (RES, 128)}
    emb = torch.nn.functional.normalize(torch.randn(N_TRAIN, 2, EMBED, generator=gen), dim=-1)
    return Corpus(images, emb)


class _Ours:
    """Our training step, exactly as text2img.train builds it."""

    def __init__(self, precision: str, channels_last: bool, fused: bool, init: dict) -> None:
        from text2img.train import build_stage

        cfg = _config(precision, channels_last, fused)
        self.runtime = setup_runtime(cfg.runtime, seed=0)
        self.stage = build_stage(1, cfg, _corpus(), self.runtime, Path(tempfile.gettempdir()),
                                 "bench")
        for name, net in self.stage.state.nets.items():  # identical initial weights
            net.load_state_dict(init[name])

    def __call__(self) -> None:
        st = self.stage
        train(st.state, st.phases, st.data, steps=st.state.step + 1, runtime=self.runtime,
              tracker=NullTracker(), log_every=10**9)


class _Reference:
    """One iteration of the official StackGAN-Pytorch Stage-I trainer, on our modules."""

    def __init__(self, init: dict) -> None:
        from text2img.models import build_discriminator, set_fused_upsampling
        from text2img.train import build_generator

        cfg = _config("fp32", False, False)
        self.g = set_fused_upsampling(build_generator(1, cfg.model, EMBED), False)
        self.d = build_discriminator("combined", resolution=RES, width=64, embed_dim=EMBED,
                                     cond_ch=128)
        self.g.load_state_dict(init["g"])
        self.d.load_state_dict(init["d"])
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        gen = torch.Generator().manual_seed(1)
        self.real = torch.rand(BATCH, 3, RES, RES, generator=gen) * 2 - 1
        self.emb = torch.nn.functional.normalize(torch.randn(BATCH, EMBED, generator=gen), dim=-1)
        self.real_labels, self.fake_labels = torch.ones(BATCH), torch.zeros(BATCH)
        self.bce = nn.BCELoss()

    @staticmethod
    def _kl(mu: Tensor, logvar: Tensor) -> Tensor:  # the port's KL_loss, verbatim maths
        kld = mu.pow(2).add_(logvar.exp()).mul_(-1).add_(1).add_(logvar)
        return torch.mean(kld).mul_(-0.5)

    def __call__(self) -> None:
        g, d, b = self.g, self.d, BATCH
        noise = torch.randn(b, 100)
        out = g(self.emb, noise)  # fake_imgs, mu, logvar: one forward with graph
        fake = out.image
        # compute_discriminator_loss
        d.zero_grad()
        real_features = d.backbone(self.real)
        fake_features = d.backbone(fake.detach())
        real_logits = torch.sigmoid(d.head(real_features, self.emb).joint).view(-1)
        wrong_logits = torch.sigmoid(d.head(real_features[: b - 1], self.emb[1:]).joint).view(-1)
        fake_logits = torch.sigmoid(d.head(fake_features, self.emb).joint).view(-1)
        err_real = self.bce(real_logits, self.real_labels)
        err_wrong = self.bce(wrong_logits, self.fake_labels[1:])
        err_fake = self.bce(fake_logits, self.fake_labels)
        err_d = err_real + (err_fake + err_wrong) * 0.5
        err_d.backward()
        self.opt_d.step()
        # compute_generator_loss (D's parameters still require grad, as in the port)
        g.zero_grad()
        logits = torch.sigmoid(d(fake, self.emb).joint).view(-1)
        err_g = self.bce(logits, self.real_labels) + self._kl(out.ca.mu, out.ca.logvar) * 2.0
        err_g.backward()
        self.opt_g.step()


def _time(fns: dict[str, Any], warmup: int, repeats: int) -> dict[str, dict[str, float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):  # interleaved: load from other processes hits every entry
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: {"s_per_step": statistics.median(wall[k]), "cpu_s_per_step":
                statistics.median(cpu[k]), "min_s": min(wall[k])} for k in fns}


def bench_stackgan_step(repeats: int = 3, warmup: int = 1, variants: bool = True,
                        threads: int = 1) -> dict[str, Any]:
    """Stage-I training step: ours vs the official port's way, images/s and the ratio.

    ``variants`` also times our step with one speed switch at a time (fp32 / bf16 autocast,
    NCHW / channels_last, literal / fused up-blocks). ``threads``: torch intra-op threads
    for every entry (1 by default: on the shared 2-core machine two threads ran 6-9x
    slower than one whenever other jobs held a core).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _bench(repeats, warmup, variants)
    finally:
        torch.set_num_threads(previous)


def _bench(repeats: int, warmup: int, variants: bool) -> dict[str, Any]:
    from text2img.models import build_discriminator
    from text2img.train import build_generator

    cfg = _config("fp32", False, True)
    torch.manual_seed(0)
    init = {"g": copy.deepcopy(build_generator(1, cfg.model, EMBED).state_dict()),
            "d": copy.deepcopy(build_discriminator("combined", resolution=RES, width=64,
                                                   embed_dim=EMBED, cond_ch=128).state_dict())}
    # Ours runs as the cpu preset does (precision=auto): bf16 autocast where the CPU has
    # native bf16, else fp32 — emulated bf16 is tens of times slower than fp32 (AVX2-only).
    native = cpu_has_native_bf16()
    fns: dict[str, Any] = {"reference": _Reference(init),
                           "ours": _Ours("auto", True, True, init)}
    if variants:
        for name, args in {"fp32_nchw": ("fp32", False, True),
                           "fp32_channels_last": ("fp32", True, True),
                           "bf16_nchw": ("bf16", False, True),
                           "bf16_channels_last_unfused": ("bf16", True, False)}.items():
            if args[0] == "bf16" and not native:
                continue
            fns[name] = _Ours(*args, init)
    times = _time(fns, warmup, repeats)
    ref = times["reference"]["s_per_step"]
    ref_cpu = times["reference"]["cpu_s_per_step"]
    out: dict[str, Any] = {
        "threads": torch.get_num_threads(), "batch": BATCH, "resolution": RES,
        "widths": {"g": 128, "d": 64}, "embed_dim": EMBED, "repeats": repeats,
        "bf16_native": native,
    }
    for name, t in times.items():
        out[name] = {"ms_per_step": round(1e3 * t["s_per_step"], 1),
                     "images_per_s": round(BATCH / t["s_per_step"], 2),
                     "images_per_cpu_s": round(BATCH / t["cpu_s_per_step"], 2),
                     "speedup_vs_reference": round(ref / t["s_per_step"], 2)}
    out["ratio"] = out["ours"]["speedup_vs_reference"]
    out["ratio_cpu_time"] = round(ref_cpu / times["ours"]["cpu_s_per_step"], 2)
    out["ours"]["setup"] = (f"{'bf16 autocast' if native else 'fp32 (no native bf16)'} + "
                            "channels_last + fused up-blocks")
    out["reference"]["setup"] = "fp32 eager, NCHW, upsample + conv, official step order"
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(bench_stackgan_step(), indent=2))
