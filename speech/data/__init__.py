"""Speech corpora: the built-in SynthVoices and loaders for the real releases.

- :mod:`speech.data.synthvoices` builds and opens SynthVoices (CLI:
  ``python -m speech.data.synthvoices --help``); its parts are
  :mod:`speech.data.grammar` (the sentences), :mod:`speech.data.voices` (festival and
  espeak-ng speakers) and :mod:`speech.data.noise` (noise families, SNR mixing, rooms).
- :mod:`speech.data.voicebank_demand` reads VoiceBank+DEMAND (and SynthVoices' enhancement
  set, which uses its layout); :mod:`speech.data.vcc` reads VCC2016, VCC2018 and
  SynthVoices' voice-conversion set as speaker folders.

Nothing is imported here, so ``import speech.data.grammar`` stays light.
"""
