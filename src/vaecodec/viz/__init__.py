"""Pictures: VAE grids, interpolations, traversals and embeddings (``grids``), RD plots
(``rd_plot``)."""
