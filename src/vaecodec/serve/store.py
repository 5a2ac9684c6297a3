"""The server's own temporary folder: files written by the server, found by a random id.

Nothing is ever read from a path a request names: a request gives an id (32 hex digits), the id
is looked up in a dictionary, and only a file this store wrote inside its folder is served. The
store is bounded in bytes and in count; the oldest files go first.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
"""What a file id looks like; anything else is refused before any lookup."""

SUFFIXES = {
    ".vcz": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".j2k": "image/j2k",
    ".jxl": "image/jxl",
    ".bin": "application/octet-stream",
}
"""The only file name suffixes the store writes, with the media type each is served as."""


@dataclass(frozen=True)
class StoredFile:
    """One file of the store: its ``path`` inside the store's folder, ``media_type``, the name
    offered for download, and its size in bytes."""

    path: Path
    media_type: str
    download_name: str
    size: int


class FileStore:
    """Files in a private temporary folder (``tempfile.mkdtemp``), at most ``max_files`` files
    and ``max_bytes`` bytes together; putting more deletes the oldest.

    Thread-safe. :meth:`close` removes the folder.
    """

    def __init__(self, max_bytes: int = 512 << 20, max_files: int = 2000) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vaecodec-serve-")).resolve()
        self.max_bytes, self.max_files = int(max_bytes), int(max_files)
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, data: bytes, suffix: str, download_name: str) -> str:
        """Write ``data`` as a new file; returns its id (32 random hex digits).

        Raises:
            ValueError: ``suffix`` is not one of :data:`SUFFIXES`.
        """
        if suffix not in SUFFIXES:
            raise ValueError(f"the store writes no {suffix!r} files")
        file_id = secrets.token_hex(16)
        path = self.root / f"{file_id}{suffix}"
        path.write_bytes(data)
        safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", download_name)[:120] or f"file{suffix}"
        entry = StoredFile(path, SUFFIXES[suffix], safe_name, len(data))
        with self._lock:
            self._files[file_id] = entry
            self._bytes += entry.size
            while len(self._files) > 1 and (
                self._bytes > self.max_bytes or len(self._files) > self.max_files
            ):
                _, old = self._files.popitem(last=False)
                self._bytes -= old.size
                old.path.unlink(missing_ok=True)
        return file_id

    def get(self, file_id: str) -> StoredFile | None:
        """The file with this id, or None (malformed id, unknown id, or already evicted)."""
        if not isinstance(file_id, str) or not ID_PATTERN.match(file_id):
            return None
        with self._lock:
            entry = self._files.get(file_id)
        if entry is None or entry.path.parent != self.root or not entry.path.is_file():
            return None
        return entry

    def __len__(self) -> int:
        return len(self._files)

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def close(self) -> None:
        """Delete the folder and everything in it."""
        with self._lock:
            self._files.clear()
            self._bytes = 0
        shutil.rmtree(self.root, ignore_errors=True)
