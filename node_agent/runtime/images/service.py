"""The image API the runtime's gRPC service calls (CRI's ImageService).

Wraps the store, the importers and the registry client behind async
methods: blocking file work (imports, unpacking, copying) runs in threads so
the daemon's event loop keeps serving, and concurrent pulls of the same
image share one download.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection
from typing import Any

from .importers import import_image
from .manifests import Platform
from .refs import lookup_key, normalize
from .registry import CredentialSource, RegistryClient, pull_image
from .registry_auth import Credentials
from .store import ImageRecord, ImageStore, UnpackPolicy

log = logging.getLogger(__name__)


class ImageService:
    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        insecure_registries: Collection[str] = (),
        credentials: CredentialSource = None,
        in_use: Callable[[], Collection[str]] | None = None,
        unpack: UnpackPolicy = "auto",
    ) -> None:
        """`root` holds the store (e.g. `<runtime root>/images`); `credentials`
        are defaults per registry host, overridden by those given to `pull`."""
        self.store = ImageStore(root, unpack=unpack, in_use=in_use)
        self._insecure = tuple(insecure_registries)
        self._client = RegistryClient(credentials=credentials, insecure_registries=self._insecure)
        self._pulls: dict[tuple[str, Credentials | None, Platform | None], asyncio.Task[ImageRecord]] = {}

    async def close(self) -> None:
        await self._client.close()

    async def pull_image(self, image: str, credentials: Credentials | None = None,
                   platform: Platform | None = None) -> ImageRecord:
        """Pull an image; callers asking for the same image at once share one pull."""
        key = (str(lookup_key(normalize(image))), credentials, platform)
        task = self._pulls.get(key)
        if task is None:
            task = asyncio.create_task(self._pull(image, credentials, platform))
            self._pulls[key] = task
            task.add_done_callback(lambda _t: self._pulls.pop(key, None))
        return await asyncio.shield(task)

    async def _pull(self, image: str, credentials: Credentials | None, platform: Platform | None) -> ImageRecord:
        if credentials is None:
            return await pull_image(self.store, image, client=self._client, platform=platform)
        # Per-request credentials (CRI AuthConfig) get their own client and token cache.
        async with RegistryClient(credentials={normalize(image).domain: credentials},
                                  insecure_registries=self._insecure) as client:
            return await pull_image(self.store, image, client=client, platform=platform)

    async def import_image(self, path: str | os.PathLike[str], name: str | None = None) -> list[ImageRecord]:
        """Import a docker save archive or an OCI layout (dir or tar)."""
        return await asyncio.to_thread(import_image, self.store, path, name)

    def list_images(self) -> list[ImageRecord]:
        return self.store.list_images()

    def image_status(self, image: str) -> ImageRecord | None:
        return self.store.image_status(image)

    async def remove_image(self, image: str) -> ImageRecord:
        return await asyncio.to_thread(self.store.remove_image, image)

    def image_config(self, image: str) -> dict[str, Any]:
        return self.store.image_config(image)

    async def rootfs_layers(self, image: str) -> list[str]:
        """Overlay lower dirs, top first (unpacking layers not unpacked yet)."""
        return await asyncio.to_thread(self.store.rootfs_layers, image)

    async def copy_rootfs(self, image: str, dest: str | os.PathLike[str]) -> None:
        await asyncio.to_thread(self.store.copy_rootfs, image, dest)


def cri_image(rec: ImageRecord, config: dict[str, Any]) -> dict[str, Any]:
    """The fields of CRI's `Image` message: uid for a numeric User, else username."""
    user = config.get("user", "").split(":", 1)[0]
    out: dict[str, Any] = {
        "id": rec.id, "repo_tags": list(rec.repo_tags), "repo_digests": list(rec.repo_digests),
        "size": rec.size, "username": "", "uid": None, "pinned": False,
    }
    if user.isdigit():
        out["uid"] = int(user)
    else:
        out["username"] = user
    return out
