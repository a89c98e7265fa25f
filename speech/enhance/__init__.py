"""Speech enhancement as a conditional GAN on spectrograms (the noisy spectrogram is c).

Modules (nothing is imported here, so ``python -m speech.enhance`` starts fast):

- :mod:`speech.enhance.models`: mask U-Net G, PatchGAN D with a ``common`` condition head;
- :mod:`speech.enhance.classical`: Wiener filter and spectral subtraction baselines;
- :mod:`speech.enhance.train`: ``python -m speech.enhance.train --config ...``;
- :mod:`speech.enhance.evaluate`: ``python -m speech.enhance.evaluate --run-dir ...``;
- :mod:`speech.enhance.inference`: ``Enhancer.load(path).enhance(wav)``;
- ``python -m speech.enhance in.wav out.wav [--checkpoint ...]``: the CLI;
- :mod:`speech.enhance.bench`: ``bench_enhance()``, the CLI's real-time factor and memory.

See ``speech/enhance/README.md``.
"""
