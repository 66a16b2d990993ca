"""A versioned model registry with atomic promotion, rollback and hot reloading.

Layout of a registry root::

    root/
      versions/v0001/        one directory per registered model (whatever the predictor saved)
      versions/v0001/registry.json   version, parent, created_at, data window, metrics, notes
      CURRENT                the promoted version's name (replaced atomically)
      history.jsonl          one JSON line per promotion or rollback

Version names are checked (:func:`check_version_name`): letters, digits, ``.``, ``_`` and
``-`` only, no ``..``, no separators, so a ``CURRENT`` file or a ``promote`` argument can never
point outside ``versions/``.

Registration copies the model into a temporary directory inside ``versions/`` and renames it into
place, so a version either exists completely or not at all.  Promotion writes ``CURRENT`` through
a temporary file and :func:`os.replace`, which is atomic on POSIX: a reader sees the old or the
new version, never a torn one.  :class:`HotModel` polls ``CURRENT`` and swaps the object a
service uses only after the new version has loaded, so no request sees a half-loaded model.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from greensched.errors import GreenSchedError

__all__ = ["HotModel", "ModelRegistry", "RegistryError", "VersionInfo", "check_version_name"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class RegistryError(GreenSchedError):
    """A registry operation cannot be done (unknown version, nothing to roll back to ...)."""


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_version_name(name: object) -> str:
    """``name`` if it is a plain version name, else :class:`RegistryError` saying why.

    A version name is 1-128 letters, digits, ``.``, ``_`` or ``-``, starting with a letter or
    digit, without ``..``: no path separators, no absolute paths, nothing that leaves
    ``versions/``.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise RegistryError(
            f"invalid model version name {name!r}: expected 1-128 letters, digits, '.', '_' or "
            "'-' (no path separators, no '..', not an absolute path), e.g. 'v0003'")
    return name


@dataclass
class VersionInfo:
    """Metadata of one registered model version (``registry.json``)."""

    version: str
    created_at: str
    parent: str | None = None
    kind: str | None = None
    data_window: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ModelRegistry:
    """Versioned model directories under ``root`` (created when missing)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Registered versions, oldest first."""
        return sorted(
            p.name
            for p in self.versions_dir.iterdir()
            if p.is_dir() and p.name.startswith("v") and (p / "registry.json").is_file()
        )

    def info(self, version: str) -> VersionInfo:
        """Metadata of ``version``."""
        path = self.path(version) / "registry.json"
        return VersionInfo(**json.loads(path.read_text(encoding="utf-8")))

    def path(self, version: str) -> Path:
        """Directory of ``version``; raises :class:`RegistryError` if invalid or unknown."""
        p = self.versions_dir / check_version_name(version)
        if p.resolve().parent != self.versions_dir.resolve():
            raise RegistryError(f"model version {version!r} resolves outside "
                                f"{self.versions_dir} (a symbolic link?)")
        if not (p / "registry.json").is_file():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(f"unknown model version {version!r} (registered: {known})")
        return p

    def current(self) -> str | None:
        """The promoted version, or ``None`` when nothing has been promoted."""
        cur = self.root / "CURRENT"
        if not cur.is_file():
            return None
        name = cur.read_text(encoding="utf-8").strip()
        return name or None

    def current_path(self) -> Path:
        """Directory of the promoted version."""
        cur = self.current()
        if cur is None:
            raise RegistryError(f"no model version has been promoted in {self.root}")
        return self.path(cur)

    def history(self) -> list[dict[str, Any]]:
        """Promotion and rollback events, oldest first."""
        path = self.root / "history.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def lineage(self, version: str) -> list[str]:
        """``version`` and its ancestors, newest first."""
        chain, seen = [], set()
        cur: str | None = version
        while cur is not None and cur not in seen:
            seen.add(cur)
            chain.append(cur)
            cur = self.info(cur).parent
        return chain

    # -- writing ---------------------------------------------------------------------------------
    def register(
        self,
        model_dir: str | Path,
        *,
        parent: str | None = None,
        kind: str | None = None,
        data_window: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        notes: str = "",
    ) -> str:
        """Copy ``model_dir`` into the registry as a new version and return its name.

        The copy is made in a temporary directory and renamed into place (atomic).
        """
        src = Path(model_dir)
        if not src.is_dir():
            raise RegistryError(f"model directory {str(src)!r} does not exist")
        if parent is not None:
            self.path(parent)
        with self._lock:
            existing = self.versions()
            number = int(existing[-1][1:]) + 1 if existing else 1
            version = f"v{number:04d}"
            tmp = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=".incoming-"))
            try:
                shutil.copytree(src, tmp, dirs_exist_ok=True)
                info = VersionInfo(
                    version=version,
                    created_at=_now(),
                    parent=parent,
                    kind=kind,
                    data_window=data_window or {},
                    metrics=metrics or {},
                    notes=notes,
                )
                (tmp / "registry.json").write_text(
                    json.dumps(asdict(info), indent=2, sort_keys=True) + "\n", encoding="utf-8"
                )
                os.replace(tmp, self.versions_dir / version)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return version

    def _log(self, event: dict[str, Any]) -> None:
        with (self.root / "history.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def promote(self, version: str, *, reason: str = "") -> None:
        """Make ``version`` the current one (atomic)."""
        self.path(version)
        with self._lock:
            previous = self.current()
            _write_atomic(self.root / "CURRENT", version + "\n")
            self._log(
                {
                    "event": "promote",
                    "version": version,
                    "previous": previous,
                    "at": _now(),
                    "reason": reason,
                }
            )

    def rollback(self, *, reason: str = "") -> str:
        """Return to the version that was current before the current one was promoted.

        Repeated rollbacks walk further back along the promotion chain.
        """
        with self._lock:
            current = self.current()
            promotions = [
                e for e in self.history() if e["event"] == "promote" and e["version"] == current
            ]
            target = promotions[-1]["previous"] if promotions else None
            if current is None or target is None:
                raise RegistryError(
                    f"nothing to roll back to: no version was current before {current!r}"
                )
            _write_atomic(self.root / "CURRENT", target + "\n")
            self._log(
                {
                    "event": "rollback",
                    "version": target,
                    "previous": current,
                    "at": _now(),
                    "reason": reason,
                }
            )
            return target


class HotModel(Generic[T]):
    """The object a service uses, reloaded when the registry's ``CURRENT`` changes.

    ``loader(path)`` builds the object from a version directory.  :meth:`get` always returns a
    fully loaded object: a new version is loaded first and swapped in with one assignment.

    A version that fails to load (or a ``CURRENT`` naming an invalid or unknown version) is
    logged and skipped: at start-up the last version that loads is served instead (the
    promotion history backwards, then the other versions newest first), and on a hot swap the
    version being served stays.  :meth:`status` says what is promoted, what is served and the
    last load error.
    """

    def __init__(self, registry: ModelRegistry, loader: Callable[[Path], T]) -> None:
        self.registry = registry
        self.loader = loader
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed: dict[str, str] = {}
        self.last_load_error: str | None = None
        promoted = self._read_current()
        if promoted is None:
            raise RegistryError(f"no model version has been promoted in {registry.root}")
        self.promoted_version: str | None = promoted
        for version in self._candidates(promoted):
            obj = self._try_load(version)
            if obj is not None:
                self._obj, self._version = obj, version
                break
        else:
            errors = "; ".join(f"{v}: {e}" for v, e in self.failed.items())
            raise RegistryError(f"no model version of {registry.root} loads ({errors})")
        if self._version != promoted:
            self.last_load_error = f"{promoted}: {self.failed[promoted]}"
            log.warning("promoted model version %r does not load; serving %s, the last version "
                        "that loads", promoted, self._version)

    def _read_current(self) -> str | None:
        try:
            return self.registry.current()
        except OSError as exc:  # pragma: no cover - unreadable CURRENT
            self.last_load_error = f"cannot read CURRENT: {exc}"
            return None

    def _candidates(self, promoted: str) -> list[str]:
        order = [promoted]
        try:
            events = self.registry.history()
        except (OSError, ValueError):
            events = []
        for e in reversed(events):
            for key in ("version", "previous"):
                v = e.get(key)
                if isinstance(v, str) and v not in order:
                    order.append(v)
        order += [v for v in reversed(self.registry.versions()) if v not in order]
        return order

    def _try_load(self, version: str) -> T | None:
        try:
            return self.loader(self.registry.path(version))
        except Exception as exc:  # noqa: BLE001 - any failure means "does not load"
            msg = f"{type(exc).__name__}: {exc}"
            self.failed[version] = msg
            self.last_load_error = f"{version}: {msg}"
            log.error("model version %r failed to load: %s", version, msg)
            return None

    @property
    def version(self) -> str:
        """The version being served."""
        return self._version

    def get(self) -> tuple[T, str]:
        """The current object and its version."""
        return self._obj, self._version

    def status(self) -> dict[str, str | None]:
        """``promoted_version`` (``CURRENT``), ``serving_version``, ``last_load_error``."""
        return {"promoted_version": self.promoted_version, "serving_version": self._version,
                "last_load_error": self.last_load_error}

    def refresh(self) -> bool:
        """Load and swap in the promoted version if it changed; True when swapped."""
        target = self._read_current()
        self.promoted_version = target
        if target is None or target == self._version or target in self.failed:
            return False
        with self._lock:
            if target == self._version:
                return False
            obj = self._try_load(target)
            if obj is None:  # keep serving the old version
                log.error("keeping model version %s", self._version)
                return False
            self._obj, self._version = obj, target
            log.info("now serving model version %s", target)
            return True

    def start(self, interval_s: float = 1.0) -> None:
        """Poll the registry in a daemon thread every ``interval_s`` seconds."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception as exc:  # pragma: no cover - never kill the poller
                    log.error("registry poll failed: %s", exc)

        self._thread = threading.Thread(target=loop, name="greensched-hot-model", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def wait_for_version(hot: HotModel[Any], version: str, timeout_s: float = 10.0) -> bool:
    """Poll until ``hot`` serves ``version`` (for tests and scripts)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if hot.version == version:
            return True
        hot.refresh()
        time.sleep(0.01)
    return hot.version == version
