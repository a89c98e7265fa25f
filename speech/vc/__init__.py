"""Non-parallel voice conversion: CycleGAN-VC2 (one-to-one, both directions in one model) and
StarGAN-VC (many-to-many, speaker-conditioned G and D with a shared ``common/`` head).

Entry points: ``python -m speech.vc.train``, ``python -m speech.vc.convert`` (any wav in,
converted wav out), ``python -m speech.vc.evaluate``; ``speech.vc.bench.bench_vc``.
"""
