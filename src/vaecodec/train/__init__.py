"""Trainers: ``vae_trainer`` (VAEs and autoencoders) and ``codec_trainer`` (image codecs)."""
