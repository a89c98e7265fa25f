"""Text-to-image data: the built-in SynthBirds set and loaders for the real releases.

Modules (import the one you need; importing this package loads nothing heavy):

``synthbirds``
    procedural birds with captions: spec, seeded splits with held-out body x wing pairs,
    on-disk cache, CLI (``python -m text2img.data.synthbirds``), ``bench_synthbirds()``.
    Its renderer, vocabulary and figure live in ``synthbirds_draw``, ``synthbirds_text``
    and ``synthbirds_figure``.
``real``
    CUB-200-2011, Oxford-102 and COCO in the StackGAN / AttnGAN / DF-GAN layouts.
``legacy``
    the restricted unpickler for their Python-2 pickles, and :class:`DatasetError`.
"""

from text2img.data.legacy import DatasetError

__all__ = ["DatasetError"]
