"""Shared conditional-GAN core: networks, heads, losses, training utilities."""
