"""The application layer: images and files to bytes and back, lossy and lossless side by side.

This is where "a VAE is a codec" becomes a file: a model from :mod:`vaecodec.models` (its
autoencoder does the lossy part, its prior the lossless part) and a byte format from
:mod:`vaecodec.coding`. Every user of coding goes through here: the CLI (``compress``,
``decompress``), the Python API, ``bench-codec`` / :mod:`vaecodec.evaluate.rd`,
``bench-lossless`` and ``vaecodec serve``, so a benchmark measures what a user runs.

- :mod:`.lossy`: ``encode_image(model, image) -> .vcz bytes``, ``decode_image(data, model)``,
  and the model identity a header records (``codec_id``, ``check_codec``, ``header_level``).
- :mod:`.lossless`: ``encode_stream`` / ``decode_stream`` of greyscale arrays with bits-back
  ANS (``VCZL``), and ``compress_files`` / ``decompress_file`` for files on disk.
"""
