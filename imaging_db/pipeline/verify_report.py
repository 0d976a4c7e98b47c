"""What ``data_verify`` found: per dataset, per orphaned prefix, and in total; as text lines or JSON."""

from dataclasses import dataclass, field

UPLOAD_IN_PROGRESS = "upload in progress"
REGISTERED_MEANWHILE = "registered while being verified; verify it again"
NO_DATASET_ID = "not under a dataset id; not removed: look at it by hand"
ROWS_ELSEWHERE = "its rows point elsewhere (storage_dir {}); not removed: look at them by hand"


@dataclass
class CorruptObject:
    """An object whose bytes do not match the sha256 its row records."""

    key: str
    recorded_sha256: str
    actual_sha256: str


@dataclass
class UnreadableObject:
    """An object the storage lists but could not return."""

    key: str
    error: str


@dataclass
class DatasetReport:
    """What verifying one registered dataset found.

    Attributes
    ----------
    dataset_serial : str
    frames : bool
        A frames dataset (else a file dataset).
    storage_dir : str
        Its key prefix, without the trailing ``/``.
    nbr_objects : int
        Objects its rows name (frames, or 1 for the file).
    verified : int
        Objects read back whose sha256 matches the row.
    unchecked : int
        Objects whose row records no checksum (rows of the original imagingDB before 2019).
    missing : list of str
        Keys named by a row with no object.
    corrupt : list of CorruptObject
    unreadable : list of UnreadableObject
    orphaned : list of str
        Keys under its prefixes (``raw_frames/<id>/``, ``raw_files/<id>/``) that no row names.
    partials : list of str
        Unfinished writes under its prefixes, left by killed runs.
    removed : list of str
        Orphaned keys and partials removed (``remove_orphans``).
    skipped : str or None
        Why its orphans were not removed, e.g. an upload in progress.
    error : str or None
        Why its objects could not be verified at all (a ``storage_dir`` that is
        no key prefix inside the storage); a problem.
    """

    dataset_serial: str
    frames: bool
    storage_dir: str
    nbr_objects: int = 0
    verified: int = 0
    unchecked: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[CorruptObject] = field(default_factory=list)
    unreadable: list[UnreadableObject] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None

    @property
    def nbr_orphaned(self) -> int:
        return len(self.orphaned) + len(self.partials)

    @property
    def remaining_orphans(self) -> list[str]:
        removed = set(self.removed)
        return [k for k in self.orphaned + self.partials if k not in removed]

    @property
    def ok(self) -> bool:
        """Verified, nothing missing, corrupt or unreadable, and no orphan left."""
        return not (self.error or self.missing or self.corrupt or self.unreadable or self.remaining_orphans)

    def summary(self) -> str:
        """``<id>: 80 frames verified, 0 missing, 0 corrupt, 0 orphaned``."""
        what = "frames" if self.frames else ("file" if self.verified == 1 else "files")
        line = (f"{self.dataset_serial}: {self.verified} {what} verified, {len(self.missing)} missing, "
                f"{len(self.corrupt)} corrupt, {self.nbr_orphaned} orphaned")
        if self.unreadable:
            line += f", {len(self.unreadable)} unreadable"
        if self.unchecked:
            line += f", {self.unchecked} without a recorded checksum"
        if self.removed:
            line += f", {len(self.removed)} removed"
        if self.error:
            line += ", NOT VERIFIED"
        return line

    def to_dict(self) -> dict:
        return {
            "dataset_id": self.dataset_serial,
            "kind": "frames" if self.frames else "file",
            "storage_dir": self.storage_dir,
            "ok": self.ok,
            "counts": {
                "objects": self.nbr_objects,
                "verified": self.verified,
                "unchecked": self.unchecked,
                "missing": len(self.missing),
                "corrupt": len(self.corrupt),
                "unreadable": len(self.unreadable),
                "orphaned": self.nbr_orphaned,
                "removed": len(self.removed),
            },
            "missing": self.missing,
            "corrupt": [vars(c) for c in self.corrupt],
            "unreadable": [vars(u) for u in self.unreadable],
            "orphaned": self.orphaned,
            "partials": self.partials,
            "removed": self.removed,
            "skipped": self.skipped,
            "error": self.error,
        }


@dataclass
class OrphanPrefix:
    """Objects under ``raw_frames/<X>/`` or ``raw_files/<X>/`` where no dataset X is registered.

    Attributes
    ----------
    prefix : str
        E.g. ``raw_frames/ML-2018-11-07-09-35-54-0012/``; ``raw_frames/`` for keys directly under it.
    dataset_serial : str or None
        X; None for keys directly under ``raw_frames/`` or ``raw_files/``.
    objects, partials : list of str
        The objects and unfinished writes found there.
    removed : list of str
        What was removed (``remove_orphans``).
    skipped : str or None
        Why nothing was removed: an upload of X in progress (not a problem), X
        registered meanwhile (not a problem), or no dataset id to claim.
    """

    prefix: str
    dataset_serial: str | None
    objects: list[str] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def nbr_orphaned(self) -> int:
        return len(self.objects) + len(self.partials)

    @property
    def ok(self) -> bool:
        """Not a problem: removed entirely, or not an orphan after all (an upload or a commit in progress)."""
        if self.skipped in (UPLOAD_IN_PROGRESS, REGISTERED_MEANWHILE):
            return True
        removed = set(self.removed)
        return all(k in removed for k in self.objects + self.partials)

    def summary(self) -> str:
        owner = f"no dataset {self.dataset_serial} registered" if self.dataset_serial else "not under a dataset id"
        line = f"{self.prefix}: {len(self.objects)} orphaned object(s), {len(self.partials)} unfinished write(s), {owner}"
        if self.removed:
            line += f", {len(self.removed)} removed"
        if self.skipped:
            line += f" ({self.skipped})"
        return line

    def to_dict(self) -> dict:
        return {"prefix": self.prefix, "dataset_id": self.dataset_serial, "ok": self.ok,
                "objects": self.objects, "partials": self.partials, "removed": self.removed,
                "skipped": self.skipped}


@dataclass
class VerifyReport:
    """Everything one verify run found, per dataset and for the prefixes of no dataset."""

    storage: str
    database: str
    all_datasets: bool
    datasets: list[DatasetReport] = field(default_factory=list)
    orphan_prefixes: list[OrphanPrefix] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.datasets) and all(o.ok for o in self.orphan_prefixes)

    def totals(self) -> dict:
        return {
            "datasets": len(self.datasets),
            "objects": sum(d.nbr_objects for d in self.datasets),
            "verified": sum(d.verified for d in self.datasets),
            "unchecked": sum(d.unchecked for d in self.datasets),
            "missing": sum(len(d.missing) for d in self.datasets),
            "corrupt": sum(len(d.corrupt) for d in self.datasets),
            "unreadable": sum(len(d.unreadable) for d in self.datasets),
            "not_verified": sum(1 for d in self.datasets if d.error),
            "orphaned": sum(d.nbr_orphaned for d in self.datasets)
                        + sum(o.nbr_orphaned for o in self.orphan_prefixes
                              if o.skipped not in (UPLOAD_IN_PROGRESS, REGISTERED_MEANWHILE)),
            "orphan_prefixes": sum(1 for o in self.orphan_prefixes
                                   if o.skipped not in (UPLOAD_IN_PROGRESS, REGISTERED_MEANWHILE)),
            "in_progress": sum(1 for o in self.orphan_prefixes if o.skipped == UPLOAD_IN_PROGRESS),
            "removed": sum(len(d.removed) for d in self.datasets) + sum(len(o.removed) for o in self.orphan_prefixes),
        }

    def to_dict(self) -> dict:
        """The ``--json`` document."""
        return {
            "ok": self.ok,
            "storage": self.storage,
            "database": self.database,
            "all": self.all_datasets,
            "seconds": round(self.seconds, 3),
            "datasets": [d.to_dict() for d in self.datasets],
            "orphan_prefixes": [o.to_dict() for o in self.orphan_prefixes],
            "totals": self.totals(),
        }

    def summary_lines(self, max_per_kind: int | None = 20) -> list[str]:
        """The human-readable report: one line per dataset and orphan prefix, the problems, a total.

        ``max_per_kind`` caps the problems listed per dataset and kind (None: all).
        """
        lines = [d.summary() for d in self.datasets] + [o.summary() for o in self.orphan_prefixes]
        problems: list[str] = []

        def add(items: list, render) -> None:
            shown = items if max_per_kind is None else items[:max_per_kind]
            problems.extend("  " + render(item) for item in shown)
            if len(items) > len(shown):
                problems.append(f"  ... and {len(items) - len(shown)} more (--json lists them all)")

        for d in self.datasets:
            if d.error:
                problems.append(f"  not verified: {d.error}")
            add(d.missing, lambda k, d=d: f"missing: {k} (dataset {d.dataset_serial} has a row for it)")
            add(d.corrupt, lambda c: f"corrupt: {c.key}: sha256 {c.actual_sha256} does not match "
                                     f"the recorded {c.recorded_sha256}")
            add(d.unreadable, lambda u: f"unreadable: {u.key}: {u.error}")
            removed = set(d.removed)
            add(d.orphaned, lambda k, d=d: f"orphaned: {k} (no row of dataset {d.dataset_serial} names it)"
                                           + (", removed" if k in removed else ""))
            add(d.partials, lambda k: "orphaned: unfinished write " + k + " (left by a killed run)"
                                      + (", removed" if k in removed else ""))
            if d.skipped and d.nbr_orphaned:
                problems.append(f"  not removed: the orphans of {d.dataset_serial} ({d.skipped})")
        for o in self.orphan_prefixes:
            if o.skipped == UPLOAD_IN_PROGRESS:
                problems.append(f"  {UPLOAD_IN_PROGRESS}: {o.prefix} (dataset {o.dataset_serial} is being "
                                "uploaded; not touched)")
                continue
            if o.skipped == REGISTERED_MEANWHILE:
                problems.append(f"  {o.prefix}: dataset {o.dataset_serial} {REGISTERED_MEANWHILE}")
                continue
            removed = set(o.removed)
            owner = f"no dataset {o.dataset_serial}" if o.dataset_serial else "no dataset id"
            add(o.objects, lambda k, owner=owner: f"orphaned: {k} ({owner})" + (", removed" if k in removed else ""))
            add(o.partials, lambda k, owner=owner: f"orphaned: unfinished write {k} ({owner})"
                                                   + (", removed" if k in removed else ""))
            if o.skipped:
                problems.append(f"  not removed: {o.prefix} ({o.skipped})")
        if problems:
            lines += ["problems:", *problems]
        t = self.totals()
        total = (f"total: {t['datasets']} dataset(s), {t['verified']} of {t['objects']} object(s) verified, "
                 f"{t['missing']} missing, {t['corrupt']} corrupt, {t['orphaned']} orphaned")
        if t["unreadable"]:
            total += f", {t['unreadable']} unreadable"
        if t["not_verified"]:
            total += f", {t['not_verified']} dataset(s) not verified"
        if t["orphan_prefixes"]:
            total += f" ({t['orphan_prefixes']} prefix(es) of no dataset)"
        if t["in_progress"]:
            total += f", {t['in_progress']} upload(s) in progress"
        if t["removed"]:
            total += f", {t['removed']} removed"
        total += f"; {'OK' if self.ok else 'PROBLEMS FOUND'}"
        return lines + [total]
