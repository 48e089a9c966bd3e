"""At start, before the first reconcile: push the images a restore staged to the registry.

`slipway restore` of a backup taken `--with-images` leaves them in `<data>/restore/images/`
when the registry was down (the documented flow restores between ./scripts/down and
./scripts/up). The revisions that need them cannot start before they are back, so this runs
before the reconciler's first pass; a failure is logged with its reason and tried again at the
next start, and never stops the platform serving what the registry already holds.
"""

from __future__ import annotations

from pipeline.build import imagecopy
from pipeline.build.registry import RegistryClient
from pipeline.core.errors import SlipwayError
from pipeline.core.logs import get as get_log
from pipeline.core.settings import Settings
from pipeline.store.backups import staged_images


def push_at_start(settings: Settings, *, client: RegistryClient | None = None) -> bool:
    """Push what a restore staged, if anything; True when nothing is left staged."""
    folder = staged_images(settings.data_dir)
    if not folder.is_dir():
        return True
    log = get_log(component="restore").bind(registry=settings.registry, staged=str(folder))
    try:
        if client is not None:
            done = imagecopy.push_staged(folder, registry=settings.registry, client=client)
        else:
            with RegistryClient(timeout_s=60, insecure=settings.insecure_registries) as own:
                done = imagecopy.push_staged(folder, registry=settings.registry, client=own)
    except SlipwayError as e:
        log.warning("restored_images_not_pushed", reason=e.message, retry="at the next start")
        return False
    except OSError as e:
        log.warning("restored_images_not_pushed", reason=str(e), retry="at the next start")
        return False
    if done.source != settings.registry:
        log.warning("restored_images_elsewhere", backed_up_from=done.source,
                    reason="the revisions name the registry they were copied from: set "
                    f"SLIPWAY_REGISTRY={done.source} (and serve the registry there)")  # fmt: skip
    log.info("restored_images_pushed", manifests=done.manifests, blobs_sent=done.pushed,
             blobs_present=done.present, bytes_sent=done.size)  # fmt: skip
    return True
