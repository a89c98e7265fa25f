"""Spectrogram GANs for speech: audio I/O, features, vocoders, the SynthVoices corpus,
real-corpus loaders and the speech metrics.

Submodules import their heavy dependencies (pyworld, pysptk, pesq, resemblyzer) lazily,
so ``import speech.audio`` stays cheap and has no side effects.
"""
