"""Container images for timonel's runtime: references, store, import, pull.

Entry point for the runtime service: `ImageService` (async). The pieces:
`refs` (names), `store` (blobs, index, layers), `unpack` (safe layer
extraction), `importers` (docker save, OCI layouts), `registry` (pull),
`push` (upload), `builder` (offline test images).
"""

from .errors import (
    DigestMismatchError,
    ImageError,
    ImageInUseError,
    ImageNotFoundError,
    InvalidImageError,
    InvalidReferenceError,
    RegistryError,
    UnsafeLayerError,
)
from .importers import import_docker_archive, import_image, import_oci_layout
from .manifests import Platform, host_platform
from .push import push_image
from .refs import Reference, normalize
from .registry import RegistryClient, pull_image
from .registry_auth import Credentials
from .service import ImageService, cri_image
from .store import ImageRecord, ImageStore, LayerRecord

__all__ = [
    "Credentials", "DigestMismatchError", "ImageError", "ImageInUseError", "ImageNotFoundError",
    "ImageRecord", "ImageService", "ImageStore", "InvalidImageError", "InvalidReferenceError",
    "LayerRecord", "Platform", "Reference", "RegistryClient", "RegistryError", "UnsafeLayerError",
    "cri_image", "host_platform", "import_docker_archive", "import_image", "import_oci_layout",
    "normalize", "pull_image", "push_image",
]
