"""Trainers, each one readable loop with its config, loss, validation and atomic, resumable
checkpoints: :mod:`.vae_trainer` (VAEs and autoencoders), :mod:`.vaegan_trainer` (VAE-GAN),
:mod:`.codec_trainer` (image codecs: the RD loss ``lmbda * 255**2 * MSE + bpp``, one list of
lambdas), :mod:`.realism_trainer` (the generative decoder of a frozen codec)."""
