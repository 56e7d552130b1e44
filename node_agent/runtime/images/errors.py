"""Errors of the image subsystem.

One base class so the gRPC service can map every image failure to a clean
status message; the subclasses exist because callers react differently to
them (NotFound vs. a corrupt download vs. a hostile layer).
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""


class InvalidReferenceError(ImageError, ValueError):
    """An image reference does not follow the distribution/reference grammar."""


class ImageNotFoundError(ImageError, LookupError):
    """No image in the store matches the reference."""


class ImageInUseError(ImageError):
    """The image is used by a container and cannot be removed."""


class DigestMismatchError(ImageError):
    """Content does not hash to the digest it was announced with."""


class UnsafeLayerError(ImageError):
    """A layer tries to write outside its root or holds forbidden entries."""


class InvalidImageError(ImageError):
    """An archive, layout, manifest or config is malformed or unsupported."""


class RegistryError(ImageError):
    """A registry refused a request or answered something unusable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
