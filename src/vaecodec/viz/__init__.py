"""Pictures: VAE grids, interpolations, traversals and embeddings (``grids``), RD plots
(``rd_plot``), codec training curves (``training_plot``)."""
