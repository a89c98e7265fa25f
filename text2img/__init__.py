"""StackGAN-style two-stage text-to-image: built-in SynthBirds data, real-dataset loaders,
text encoders, the attribute judge and offline evaluation."""
