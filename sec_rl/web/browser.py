"""Chromium for BrowserGym: find a browser, point MiniWoB at its bundled pages, and keep browsers alive.

Which Chromium, in order:

1. ``SEC_RL_CHROMIUM``, if set (a path or a command name);
2. Playwright's own build, when ``playwright install chromium`` has put it where Playwright looks
   (``PLAYWRIGHT_BROWSERS_PATH`` or ``~/.cache/ms-playwright``);
3. a system Chromium: ``/usr/lib/chromium/chromium``, then ``chromium``, ``chromium-browser``,
   ``google-chrome`` on the ``PATH``.

BrowserGym launches its browsers itself (one for the page, one for a chat window) and passes
``pw_chromium_kwargs`` to only one of them, so the executable and flags cannot be given through its
options. :func:`prepare_browser` instead wraps Playwright's ``BrowserType.launch`` in the calling
process -- meant to be a pool worker that owns its environment -- to add the executable and
:data:`CHROMIUM_FLAGS`. Inside :func:`keep_browsers_alive`, the same wrapper hands out kept browsers
whose ``close()`` only closes their contexts, so BrowserGym's own ``reset`` runs unchanged without
relaunching Chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CHROMIUM_FLAGS",
    "Chromium",
    "ChromiumNotFoundError",
    "browser_processes",
    "close_kept_browsers",
    "find_chromium",
    "keep_browsers_alive",
    "miniwob_url",
    "prepare_browser",
]

ENV_VAR = "SEC_RL_CHROMIUM"
# --no-sandbox: Chromium refuses to start as root with its sandbox (Playwright adds it too, unless chromium_sandbox).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--disable-gpu",
    "--disable-quic",
    "--disable-sync",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
)
SYSTEM_CANDIDATES: tuple[str, ...] = (
    "/usr/lib/chromium/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
INSTALL_HINT = (
    "install one: `apt-get install -y chromium` (Debian/Ubuntu), or `playwright install chromium` "
    f"(downloads Playwright's own build), or name a Chromium/Chrome binary in ${ENV_VAR}."
)


class ChromiumNotFoundError(RuntimeError):
    """No usable Chromium on this machine; the message says how to install one."""


@dataclass(frozen=True)
class Chromium:
    """A Chromium to launch: ``executable`` None means Playwright's own build (nothing to override)."""

    executable: str | None
    source: str  # "env", "playwright" or "system"

    def __str__(self) -> str:
        return f"Playwright's own Chromium ({self.source})" if self.executable is None else self.executable


# -- finding Chromium ------------------------------------------------------------------------------
def playwright_chromium() -> Path | None:
    """The Chromium that ``playwright install chromium`` installed for this Playwright, if present."""
    try:
        import playwright
    except ImportError:
        return None
    package = Path(playwright.__file__).parent / "driver" / "package"
    try:
        browsers = json.loads((package / "browsers.json").read_text())["browsers"]
        revision = next(b["revision"] for b in browsers if b["name"] == "chromium")
    except (OSError, ValueError, KeyError, StopIteration):
        return None
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if root == "0":
        base = package / ".local-browsers"
    elif root:
        base = Path(root).expanduser()
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "ms-playwright"
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "ms-playwright"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ms-playwright"
    folder = base / f"chromium-{revision}"
    for relative in (
        "chrome-linux/chrome",
        "chrome-mac/Chromium.app/Contents/MacOS/Chromium",
        "chrome-win/chrome.exe",
    ):
        if (folder / relative).is_file():
            return folder / relative
    return None


def _executable(name: str) -> str | None:
    path = Path(name).expanduser()
    if path.is_absolute() or os.sep in name:
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(name)


def find_chromium() -> Chromium:
    """The Chromium BrowserGym will use (see the module docstring for the order), or a helpful error."""
    named = os.environ.get(ENV_VAR)
    if named:
        found = _executable(named)
        if found is None:
            raise ChromiumNotFoundError(f"${ENV_VAR}={named!r} is not an executable file or command; {INSTALL_HINT}")
        return Chromium(found, "env")
    if playwright_chromium() is not None:
        return Chromium(None, "playwright")
    for candidate in SYSTEM_CANDIDATES:
        found = _executable(candidate)
        if found is not None:
            return Chromium(found, "system")
    raise ChromiumNotFoundError(
        "no Chromium found (not Playwright's own, nor any of "
        f"{', '.join(SYSTEM_CANDIDATES)}, nor ${ENV_VAR}): {INSTALL_HINT}"
    )


def miniwob_url() -> str:
    """``MINIWOB_URL`` if set, else a ``file://`` URL of the task pages shipped in the ``miniwob`` package."""
    if os.environ.get("MINIWOB_URL"):
        return os.environ["MINIWOB_URL"]
    try:
        import miniwob
    except ImportError:
        raise RuntimeError(
            "MiniWoB pages not found: `pip install --no-deps miniwob==1.1.0` (it ships the task HTML), "
            "or set MINIWOB_URL to a folder or server holding miniwob/html/miniwob/."
        ) from None
    folder = Path(miniwob.__file__).parent / "html" / "miniwob"
    if not (folder / "click-test.html").is_file():
        raise RuntimeError(f"the miniwob package has no task pages in {folder}: reinstall miniwob==1.1.0.")
    return folder.as_uri() + "/"


# -- launching -------------------------------------------------------------------------------------
class _Launcher:
    """State of the wrapper around ``BrowserType.launch`` in this process."""

    def __init__(self) -> None:
        self.original: Any = None
        self.chromium: Chromium | None = None
        self.keep = False
        self.kept: dict[str, Any] = {}
        self.lock = threading.Lock()

    def launch(self, browser_type: Any, *args: Any, **kwargs: Any) -> Any:
        if browser_type.name != "chromium":
            return self.original(browser_type, *args, **kwargs)
        if self.chromium is not None and self.chromium.executable and not kwargs.get("executable_path"):
            kwargs["executable_path"] = self.chromium.executable
        given = list(kwargs.get("args") or [])
        kwargs["args"] = given + [flag for flag in CHROMIUM_FLAGS if flag not in given]
        if not self.keep:
            return self.original(browser_type, *args, **kwargs)
        key = json.dumps([args, kwargs], sort_keys=True, default=repr)
        browser = self.kept.get(key)
        if browser is None or not browser.is_connected():
            browser = self.kept[key] = self.original(browser_type, *args, **kwargs)
        return _KeptBrowser(browser)


_LAUNCHER = _Launcher()


class _KeptBrowser:
    """A Playwright browser whose ``close()`` closes its contexts but leaves the process running."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)

    def close(self, **_: Any) -> None:
        if self._browser.is_connected():
            for context in list(self._browser.contexts):
                context.close()


def prepare_browser(chromium: Chromium | None = None) -> Chromium:
    """Make BrowserGym usable in this process: Chromium found and wired into Playwright, MINIWOB_URL set.

    Idempotent. Call it in the process that runs BrowserGym (a pool worker): it changes Playwright's
    ``BrowserType.launch`` for the whole process.
    """
    chromium = chromium or find_chromium()
    os.environ.setdefault("MINIWOB_URL", miniwob_url())
    from playwright.sync_api import BrowserType

    with _LAUNCHER.lock:
        if _LAUNCHER.original is None:
            _LAUNCHER.original = BrowserType.launch

            def launch(self: Any, *args: Any, **kwargs: Any) -> Any:
                return _LAUNCHER.launch(self, *args, **kwargs)

            launch.__doc__ = BrowserType.launch.__doc__
            BrowserType.launch = launch  # type: ignore[method-assign]
        _LAUNCHER.chromium = chromium
    return chromium


@contextmanager
def keep_browsers_alive(enabled: bool = True) -> Iterator[None]:
    """Within this block, launching a browser reuses a live one launched with the same options."""
    previous, _LAUNCHER.keep = _LAUNCHER.keep, enabled
    try:
        yield
    finally:
        _LAUNCHER.keep = previous


def close_kept_browsers() -> None:
    """Really close the browsers :func:`keep_browsers_alive` kept (errors of dead browsers are ignored)."""
    while _LAUNCHER.kept:
        _, browser = _LAUNCHER.kept.popitem()
        with contextlib.suppress(Exception):  # a crashed browser cannot be closed, and needs not be
            browser.close()


def browser_processes(root_pid: int | None = None) -> list[Any]:
    """The top-level Chromium processes under ``root_pid`` (default: this process) as ``psutil.Process``.

    A browser's own helpers (zygote, renderers, GPU process) are not listed: each entry is one browser.
    """
    import psutil

    try:
        descendants = psutil.Process(root_pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    pids = {p.pid for p in descendants}
    browsers = []
    for process in descendants:
        try:
            if _is_chromium(process) and not (process.ppid() in pids and _is_chromium(psutil.Process(process.ppid()))):
                browsers.append(process)
        except psutil.Error:
            continue
    return browsers


def _is_chromium(process: Any) -> bool:
    name = process.name().lower()
    return "chrom" in name or "headless_shell" in name
