"""Import a user's app folder and find its ``hibana.App``, with errors that name the file,
the line and the fix instead of a traceback."""

from __future__ import annotations

import difflib
import importlib.machinery
import importlib.util
import inspect
import linecache
import os
import re
import sys
import traceback
from pathlib import Path
from types import CodeType
from typing import Any, NoReturn

from hibana.app import EVENTS_SOURCE, App
from hibana.blueprint import Blueprint
from hibana.errors import AppError, AppLoadError

APP_FILE = "function_app.py"
#: How an app module imports its neighbours (the hint for a relative import).
_ABSOLUTE = "`from helpers import x`, not `from .helpers import x`"


def _rel(path: str | os.PathLike[str]) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if len(rel) < len(str(path)) else str(path)


class _FromSource(importlib.machinery.SourceFileLoader):
    """Compiles a module of the app from its source at every import, and caches no
    bytecode: a cached ``.pyc`` is matched by its source's size and modification time in
    whole seconds, so an edit saved within the second that keeps the size (``1`` to ``2``)
    would reload the old code, under ``hibana dev`` and ``hibana reload`` alike."""

    def path_stats(self, path: str) -> NoReturn:
        raise OSError("the app's own modules are compiled from their source")

    def source_to_code(  # type: ignore[override]  # SourceLoader's is a method, not static
        self, data: Any, path: Any, *, _optimize: int = -1
    ) -> CodeType:
        try:
            return super().source_to_code(data, path, _optimize=_optimize)
        except SyntaxError as exc:
            if exc.filename is None:  # a NUL byte: Python names no file
                exc.filename = path
            raise


class _AppModules:
    """The path hook that imports the modules under ``folder`` (the app's, not those of
    a virtualenv in it) with ``_FromSource``; the rest of ``sys.path`` goes on as Python's."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._inside = folder + os.sep

    def __call__(self, path: str) -> importlib.machinery.FileFinder:
        # a .zip on sys.path is zipimport's
        if not os.path.isdir(path) or not self.owns(path):
            raise ImportError(f"{path} is not the app's own code")
        return importlib.machinery.FileFinder(
            path,
            (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
            (_FromSource, importlib.machinery.SOURCE_SUFFIXES),
            (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
        )

    def owns(self, path: str) -> bool:
        """``path`` (a folder) holds the app's own code: it is in the app's folder, and not
        in a virtualenv or a folder packages were installed into there."""
        return (
            (path == self.folder or path.startswith(self._inside))
            and _SITE.isdisjoint(Path(path).parts)
            and not self._installed(path)
        )

    def _installed(self, path: str) -> bool:
        """``path`` is in a folder packages were installed into (``pip install -t vendor``:
        it holds their ``.dist-info``), between it and the app's folder."""
        here = Path(path)
        while str(here).startswith(self._inside):
            try:
                # .dist-info, as pip install -t writes it (an .egg-info is a project's own,
                # from an editable install of the app: its code is the app's)
                if any(name.endswith(".dist-info") for name in os.listdir(here)):
                    return True
            except OSError:
                return False
            here = here.parent
        return False


def _import_from_source(folder: str) -> None:
    if not any(isinstance(h, _AppModules) and h.folder == folder for h in sys.path_hooks):
        sys.path_hooks.insert(0, _AppModules(folder))
        sys.path_importer_cache.clear()  # found again, through the hook


#: Folders of installed packages, where they are inside the app's folder (a ``.venv``).
_SITE = frozenset({"site-packages", "dist-packages", "__pypackages__"})


def _said(exc: BaseException) -> str:
    """``str(exc)``, or what stands for it when that raises."""
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__} whose str raised>"


#: Python's TypeError for a keyword argument the callee does not take.
_UNEXPECTED = re.compile(r"(\w+)\.(\w+)\(\) got an unexpected keyword argument '(\w+)'")


def _argument_hint(exc: TypeError, said: str) -> str:
    """For a call into hibana (``app.http``, ``hibana.App``, ``hibana.Fixed``) given a
    keyword argument it does not take: the one meant, if one is close, and those it takes."""
    import hibana

    found = _UNEXPECTED.fullmatch(said)
    owner = getattr(hibana, found[1], None) if found else None
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # the caller's: Python refuses the argument before the call
    if found is None or not isinstance(owner, type) or tb is None:
        return ""
    cls, method, given = found.groups()
    line = linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    if (
        f".{method}(" not in line
        if method != "__init__"
        else (f"hibana.{cls}(" not in line and tb.tb_frame.f_globals.get(cls) is not owner)
    ):
        return ""  # a class of the app's own (or a library's) of the same name
    try:
        signature = inspect.signature(getattr(owner, method))
    except (AttributeError, TypeError, ValueError):
        return ""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = [
        p for p in signature.parameters if p != "self" and signature.parameters[p].kind in named
    ]
    called = f"hibana.{cls}()" if method == "__init__" else f"app.{method}()"
    close = difflib.get_close_matches(given, takes, 1)
    meant = f"did you mean {close[0]}=? " if close else ""
    return f"\n    {called} takes no {given}=: {meant}it takes {', '.join(takes)}"


def _stray_nul(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(":LINE:COLUMN", the line) of the first NUL byte in ``path``, a UTF-8 file
    otherwise; None for what is no UTF-8 (UTF-16 holds a NUL in each ASCII character)."""
    try:
        data = Path(path).read_bytes()
        before = data.partition(b"\0")[0]
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) or 4 * data.count(b"\0") >= len(data):
            return None
        line_start = before.rfind(b"\n") + 1
        column = len(before[line_start:].decode("utf-8")) + 1
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    line = data[line_start:].split(b"\n", 1)[0].decode().rstrip()
    number = before.count(b"\n") + 1
    return f":{number}:{column}", line.replace("\0", "\\x00")


def _app_file_named_otherwise(folder: Path) -> str | None:
    """The name of a module in ``folder`` (``app.py``, ``main.py``) that makes a
    ``hibana.App``, for a folder with no ``function_app.py``."""
    try:
        files = sorted(folder.glob("*.py"))[:100]
        for file in files:
            text = file.read_bytes()[:1_000_000]
            if b"hibana" in text and re.search(rb"\bApp\s*\(", text):
                return file.name
    except OSError:
        pass
    return None


def _where_set(path: str | os.PathLike[str], name: str = "app") -> str:
    """``function_app.py:LINE`` of the last top-level statement that sets ``name``, or the
    file alone when none does (a ``globals()`` update)."""
    line = _line_setting(path, name)
    return _rel(path) + (f":{line}" if line is not None else "")


def _named_at(path: str | os.PathLike[str], name: str) -> str:
    """``bp (line 3)``: ``name`` and where ``path`` sets it, as a list of them says it."""
    line = _line_setting(path, name)
    return name if line is None else f"{name} (line {line})"


def _line_setting(path: str | os.PathLike[str], name: str) -> int | None:
    import ast

    line = None
    try:
        for node in ast.parse(Path(path).read_bytes()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                targets = [ast.Name(node.name)]
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets = [ast.Name(a.asname or a.name) for a in node.names]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                line = node.lineno
    except (OSError, SyntaxError, ValueError):
        pass
    return line


def _not_an_app(value: object) -> str:
    """Why ``app = value`` is not an app to serve, and the fix."""
    if value is App:
        return "`app` is the class hibana.App, not an App: call it, `app = hibana.App()`"
    if isinstance(value, Blueprint):
        return (
            "`app` is a hibana.Blueprint, not an App: write `app = hibana.App()` and "
            "`app.register(bp)` with the Blueprint"
        )
    try:
        name = getattr(value, "__qualname__", None) if callable(value) else None
        shown = name if isinstance(name, str) else repr(value)  # no address for a function
    except Exception:
        shown = "a value"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (
        f"`app` is {shown} ({type(value).__name__}), not a hibana.App; the app to serve is "
        "`app = hibana.App()`"
    )


def _heard(app: App) -> App:
    """``app``, unless a webhook of it publishes to a topic none of its functions
    subscribes to: every delivery would be acknowledged to its sender and then dropped."""
    unheard = app.unheard_webhooks()
    if unheard:
        topic, route, where = unheard[0]
        subscribed = ", ".join(t for t in app.topics if t not in {u[0] for u in unheard})
        raise AppLoadError(
            f"app.webhook({route!r}, topic={topic!r}) in {where} publishes to a topic no "
            "function subscribes to, so each delivery would be acknowledged to its sender "
            f"and reach no one; subscribe one with @app.event({topic!r}), or publish to a "
            f"topic one subscribes to ({subscribed or 'none does yet'})"
        )
    return app


def _unserved(blueprint: Blueprint, served: set[int]) -> list[str]:
    """The names of ``blueprint``'s functions not among those ``served`` (their ids), but
    for the events endpoint of an App (the App served has its own)."""
    return [
        fn.name for fn in blueprint.functions if id(fn) not in served and fn.source != EVENTS_SOURCE
    ]


def _imported_twice(app: App, folder: Path) -> None:
    """Refuse an app one of whose modules was imported under two names (``core`` and,
    by way of the folder above, ``myapp.core``): each import ran it, so what it declares
    on an App or a Blueprint it makes went to a second one, that nothing serves."""
    inside = str(folder) + os.sep
    names: dict[str, list[str]] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(inside):
            names.setdefault(file, []).append(name)
    served = {id(fn) for fn in app.functions}
    for file, twice in names.items():
        if len(twice) < 2:
            continue
        for name in twice:
            for value in list(vars(sys.modules[name]).values()):
                if not isinstance(value, Blueprint):
                    continue
                lost = _unserved(value, served)
                if lost:
                    one, *others = sorted(twice, key=len)
                    raise AppLoadError(
                        f"{_rel(file)} is imported twice, as {one} and {others[0]}, and each "
                        f"import ran it: the functions declared on what the second made "
                        f"({', '.join(lost)}) would not be served; import it by one name, "
                        f"`import {one}` (the app folder is on sys.path)"
                    )


def _unregistered(app: App, folder: Path) -> None:
    """Refuse an app one of whose modules makes a Blueprint (or an App) with functions
    that no App registered on ``app`` serves (``app.register(bp)`` forgotten): they would
    answer 404 with nothing said."""
    ours = _AppModules(str(folder))
    served = {id(fn) for fn in app.functions}
    found: dict[int, tuple[str, str, Blueprint]] = {}  # id -> (module, name, it)
    for module_name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or not ours.owns(os.path.dirname(file)):
            continue
        for name, value in list(vars(module).items()):
            if (
                isinstance(value, Blueprint)
                and value is not app
                and (id(value) not in found or found[id(value)][0] == "function_app")
            ):
                found[id(value)] = (module_name, name, value)  # where it was made
    for module_name, name, value in found.values():
        lost = _unserved(value, served)
        if not lost:
            continue
        where = _where_set(sys.modules[module_name].__file__ or APP_FILE, name)
        brought = "" if module_name == "function_app" else f" (`from {module_name} import {name}`)"
        kind = "a second hibana.App" if isinstance(value, App) else "the hibana.Blueprint"
        raise AppLoadError(
            f"{where} makes {kind} {name}, whose functions ({', '.join(lost)}) would not be "
            f"served: the App served does not register it; add `app.register({name})` to "
            f"{APP_FILE}{brought}"
        )


def _loaded(app: App, path: Path) -> App:
    _imported_twice(app, path.parent)
    _unregistered(app, path.parent)
    app.loaded(_rel(path))
    return app


def load_app(app_dir: str | os.PathLike[str]) -> App:
    """The ``App`` defined by ``APP_DIR/function_app.py``.

    Raises ``AppLoadError`` (or the ``AppError`` the app's own declarations raised)."""
    folder = Path(app_dir).resolve()
    if not folder.is_dir():
        raise AppLoadError(f"App folder {app_dir} does not exist; create one with `hibana new`")
    path = folder / APP_FILE
    if not path.is_file():
        other = _app_file_named_otherwise(folder)
        raise AppLoadError(
            f"No {APP_FILE} in {_rel(folder)}; "
            + (
                f"{other} makes a hibana.App: rename it {APP_FILE}, the file hibana serves"
                if other is not None
                else f"the app's functions go there (`hibana new {app_dir}` writes a starter)"
            )
        )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    _import_from_source(str(folder))
    spec = importlib.util.spec_from_file_location(
        "function_app", path, loader=_FromSource("function_app", str(path))
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    try:
        # as the import system marks it: a circular import is then said to be one
        spec._initializing = True  # type: ignore[attr-defined]
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop("function_app", None)  # no half-imported module left behind
            raise
        finally:
            spec._initializing = False  # type: ignore[attr-defined]
    except AppError:
        raise
    except SyntaxError as exc:
        where = _rel(exc.filename or path)
        if exc.lineno is not None:  # none for a NUL byte in the source
            where += f":{exc.lineno}" + (f":{exc.offset}" if exc.offset else "")
        text = f"\n    {exc.text.rstrip()}" if exc.text else ""
        nul = _stray_nul(exc.filename or path) if "null bytes" in exc.msg else None
        if nul is not None:
            at, line = nul
            where += at
            text += (
                f"\n    {line}\n    a NUL byte (\\x00) is there, which Python source cannot "
                "hold: delete it (editors show it as ^@, <0x00> or nothing at all)"
            )
        elif "codec can't decode" in exc.msg or "null bytes" in exc.msg:
            # a file saved in Latin-1, or as UTF-16 (PowerShell's `>` does that)
            text += (
                "\n    the file is not UTF-8 text, which is how Python reads source: save it "
                "as UTF-8 (in an editor: its encoding setting)"
            )
        raise AppLoadError(f"{where}: {type(exc).__name__}: {exc.msg}{text}") from None
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and the app's own too
        frames = traceback.extract_tb(exc.__traceback__)
        # the app's own frames: in its folder (not in a sibling whose name begins the
        # same), and not of what is installed there (a .venv): the line to name is the
        # app's that called into hibana or a library, not theirs that raised
        ours = _AppModules(str(folder))
        inside = [f for f in frames if ours.owns(os.path.dirname(f.filename))]
        frame = (inside or frames)[-1]
        said = _said(exc)
        hint = ""
        if isinstance(exc, ImportError) and "relative import" in said:
            # function_app.py is imported as a top-level module, its folder on sys.path
            hint = f"\n    the app folder is on sys.path: import its modules by name ({_ABSOLUTE})"
        elif isinstance(exc, ImportError) and "initialized module 'function_app'" in said:
            hint = (
                f"\n    a module {APP_FILE} imports imports it back: declare that module's "
                "functions on a hibana.Blueprint, and app.register(bp) in " + APP_FILE
            )
        elif isinstance(exc, TypeError):
            hint = _argument_hint(exc, said)
        elif isinstance(exc, SystemExit) and exc.code is None:
            said = "sys.exit() was called as the app was imported"
        what = f"{type(exc).__name__}: {said}" if said else type(exc).__name__
        raise AppLoadError(
            f"{_rel(frame.filename)}:{frame.lineno}: importing {APP_FILE} failed: {what}"
            + (f"\n    {frame.line}" if frame.line else "")
            + hint
        ) from None
    apps = {name: value for name, value in vars(module).items() if isinstance(value, App)}
    if "app" in apps:
        served = {id(fn) for fn in apps["app"].functions}  # a registered App's are too
        unserved = {
            name: _unserved(other, served)
            for name, other in apps.items()
            if other is not apps["app"]
        }
        dropped = [name for name, names in unserved.items() if names]
        if dropped:
            names = ", ".join(unserved[dropped[0]])
            raise AppLoadError(
                f"{_rel(path)} defines a second App, {dropped[0]}, whose functions ({names}) "
                "would not be served: only `app` is; declare them on `app`, or on a "
                "hibana.Blueprint registered with app.register(bp)"
            )
        return _loaded(_heard(apps["app"]), path)
    if len(apps) == 1:
        return _loaded(_heard(next(iter(apps.values()))), path)
    if not apps and "app" in vars(module):
        raise AppLoadError(f"{_where_set(path)}: {_not_an_app(vars(module)['app'])}")
    if not apps:
        prints = [n for n, v in vars(module).items() if isinstance(v, Blueprint)]
        raise AppLoadError(
            f"{_rel(path)} defines no hibana.App"
            + (
                f", only the hibana.Blueprint {_named_at(path, prints[0])}, which no App "
                f"serves; add `app = hibana.App()` and `app.register({prints[0]})`"
                if prints
                else "; add `app = hibana.App()` and declare functions on it"
            )
        )
    made = ", ".join(_named_at(path, name) for name in sorted(apps))
    raise AppLoadError(
        f"{_rel(path)} defines several Apps, {made}, and none is named `app`; name the one "
        "to serve `app`, and register the others on it (app.register(other))"
    )
