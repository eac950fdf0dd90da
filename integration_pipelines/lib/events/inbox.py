"""The events inbox on disk: where the receiver writes, the sensor claims and the job archives.

Under one root (`EVENTS_INBOX_DIR`'s parent, `<data dir>/events` by default):
- `inbox/`: accepted events waiting, one `<name>.json` per event (files dropped by hand too);
- `claimed/<batch>/`: files a sensor tick handed to one `process_events` run;
- `archive/`: files whose event the log holds (processed, ignored, or failed and kept for retry);
- `quarantine/`: files that could not be parsed, each beside `<name>.reason`;
- `seen/`: a hard link per event the receiver accepted, so a repeat is answered `duplicate`
  after its file has left the inbox (same inode: no extra space);
- `tmp/`: files being written.

Every write is a temporary file, fsynced, then linked or renamed into place, so a reader never
sees half a file and a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from integration_pipelines.lib.events.models import InboxEvent


def file_name(tenant_id: str, event_id: str) -> str:
    """The inbox file of an event: derived from its id alone, so a repeat collides with it."""
    return hashlib.sha256(f"{tenant_id}\x00{event_id}".encode()).hexdigest()[:40] + ".json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EventsInbox:
    """The directories of one events inbox (see the module's docstring)."""

    inbox: Path

    @classmethod
    def at(cls, inbox_dir: Path) -> EventsInbox:
        """The inbox at `inbox_dir`, its directories created."""
        return cls(Path(inbox_dir)).create()

    def create(self) -> EventsInbox:
        for path in (self.inbox, self.tmp, self.seen, self.claimed, self.archive, self.quarantine):
            path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def root(self) -> Path:
        return self.inbox.parent

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def seen(self) -> Path:
        return self.root / "seen"

    @property
    def claimed(self) -> Path:
        return self.root / "claimed"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def _write_tmp(self, content: bytes) -> Path:
        tmp = self.tmp / f"{uuid.uuid4().hex}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(tmp, flags, 0o640)
        except FileNotFoundError:
            # The first write under a new root (the receiver creates nothing until an event comes).
            fd = os.open(self.create().tmp / tmp.name, flags, 0o640)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def accept(self, event: InboxEvent) -> bool:
        """Write an accepted event into the inbox; False (and nothing written) for a repeat.

        A repeat is an event whose file is already in the inbox (`link` fails: of two concurrent
        POSTs exactly one wins) or that the receiver accepted before (`seen/`). The file is linked
        into the inbox before `seen/`, so a crash in between loses nothing: the sender, never
        answered, sends again, and the inbox catches the repeat (or, if the event was processed
        meanwhile, the events log does).
        """
        name = file_name(event.tenant_id, event.event_id)
        if (self.seen / name).exists():
            return False
        tmp = self._write_tmp(event.to_json())
        try:
            try:
                os.link(tmp, self.inbox / name)
            except FileExistsError:
                return False
            try:
                os.link(tmp, self.seen / name)
            except FileExistsError:
                pass
            _fsync_dir(self.inbox)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def waiting(self, limit: int) -> list[str]:
        """Up to `limit` names of files waiting in the inbox, the oldest (by modification time) of
        the first `limit * 4` the listing yields: a tick's cost is bounded however many files
        wait, and files that wait longer are taken as the listing reaches them."""
        names: list[tuple[float, str]] = []
        with os.scandir(self.inbox) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    names.append((entry.stat().st_mtime, entry.name))
                except FileNotFoundError:
                    continue  # claimed by someone else meanwhile
                if len(names) >= limit * 4:
                    break
        return [name for _, name in sorted(names)[:limit]]

    def claim(self, batch: str, names: list[str]) -> list[str]:
        """Move `names` into `claimed/<batch>/`; returns those moved (another claimer may win some)."""
        target = self.claimed / batch
        target.mkdir(parents=True, exist_ok=True)
        moved = []
        for name in names:
            try:
                os.rename(self.inbox / name, target / name)
            except FileNotFoundError:
                continue
            moved.append(name)
        _fsync_dir(target)
        _fsync_dir(self.inbox)
        return moved

    def batches(self) -> list[str]:
        """Claimed batches not yet finished (their directory still exists)."""
        return sorted(p.name for p in self.claimed.iterdir() if p.is_dir())

    def batch_files(self, batch: str) -> list[Path]:
        directory = self.claimed / batch
        if not directory.exists():
            return []
        return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))

    def archive_file(self, path: Path) -> None:
        os.replace(path, self.archive / path.name)

    def quarantine_file(self, path: Path, reason: str) -> None:
        """Move an unreadable file aside, beside `<name>.reason` saying why (reason first: a crash
        between the two leaves the file where it was, to be tried again)."""
        reason_path = self.quarantine / f"{path.name}.reason"
        tmp = self._write_tmp(reason.encode())
        os.replace(tmp, reason_path)
        os.replace(path, self.quarantine / path.name)

    def finish_batch(self, batch: str) -> None:
        directory = self.claimed / batch
        try:
            directory.rmdir()
        except FileNotFoundError:
            pass
        _fsync_dir(self.archive)
