"""The per-frame ingest pipeline: poll -> fetch -> validate -> decode -> regrid -> append.

One :class:`SourceRunner` drives one source against the observation store. A run
(:meth:`SourceRunner.run_once`) polls the source for the items of the backfill window,
skips what the store already holds, fetches and decodes the rest (newest first, so the live
frame is never stuck behind a backfill; the next file is decoded in a worker thread while
the previous frame is written) and appends each frame. Everything a restart needs
lives in the store's per-source state (``store.get_state(name)``):

- ``done``: items processed (key -> signature, slot time), so nothing is fetched twice;
- ``bad``: items quarantined (key -> signature/SHA-1 and reason), retried only when they change;
- ``missing``: items the provider did not offer yet (404), retried with a back-off until
  they leave the backfill window (a provider that skips a slot costs a few cheap requests);
- whatever the source keeps (ETags, drop-folder sizes, replay file times).

Failures: a transient fetch failure (timeout, reset, 5xx, truncated transfer) is logged and
retried at the next poll; a file that fetches but fails validation or decoding is
*quarantined* (moved/copied to ``quarantine_dir/<source>/`` with a ``.reason.txt``); a failing
source never stops the others (each runner catches everything and reports it in the status).

Ordering and atomicity: the store writes a frame before its completeness flag, and the
runner records an item as done only after the append; a crash in between re-fetches the
item and the idempotent append turns it into a no-op. Lightning files (kind "lightning")
are gridded per cadence slot and a slot is written once it is closed (its end plus
``lightning_settle`` has passed on the source clock), recomputed from all of its files when a
late file arrives, so counts are exact and idempotent.

Status: :class:`IngestStatus` keeps counters (frames ingested / failed / backfilled /
duplicate / quarantined), the ingest lag and the last error per source, written to the store
state ``ingest_status``; :func:`read_ingest_status` reads it (API /v1/status, /metrics).
``frames_ingested`` never falls below the store's own per-source count (written with each
frame's completeness marker), so it survives a SIGKILL exactly as the frames do.

HTTP validators (ETag, Last-Modified) are remembered only for content that decoded (stored
or skipped as off-cadence), never for quarantined content: a truncated transfer that carried
the full file's ETag must not turn every later request into a 304.
The single-writer rule is enforced by :class:`WriterLock`, a lease file in the store folder.

The package is the ingest layer, one home for all of it: ``settings`` (options, run report),
``pipeline`` (:class:`SourceRunner`), ``decode`` (validation and decoding), ``status``
(counters, :func:`read_ingest_status`), ``lease`` (:class:`WriterLock`), ``config`` (the
configuration schema, :func:`ingest.config.load_ingest_config`) and ``process`` (the
scheduler, :func:`ingest.process.run_ingest_process`). The names below are the pipeline's
API; ``config`` and ``process`` (pydantic, APScheduler) are imported only where used.
Layering: ``ingest`` imports the library ``nowcast`` only; ``service`` may read the status
(``read_ingest_status``); ``cli`` runs the process.
"""

from ingest.decode import BadFile, OffCadence, decode_radar
from ingest.lease import LockHeld, WriterLock
from ingest.pipeline import MAX_DONE, MAX_LIGHTNING_SLOTS, MAX_VALIDATORS, SourceRunner
from ingest.settings import IngestSettings, RunReport
from ingest.status import STATUS_KEY, IngestStatus, read_ingest_status

__all__ = [
    "MAX_DONE",
    "MAX_LIGHTNING_SLOTS",
    "MAX_VALIDATORS",
    "STATUS_KEY",
    "BadFile",
    "IngestSettings",
    "IngestStatus",
    "LockHeld",
    "OffCadence",
    "RunReport",
    "SourceRunner",
    "WriterLock",
    "decode_radar",
    "read_ingest_status",
]
