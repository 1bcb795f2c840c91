"""What every command of ``hibana`` shares: the ``--app`` and ``--store`` options, and how a
command refuses its input (a usage error, exit 2) or fails (exit 1)."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperCommand

#: click's UsageError, what its parser raises: BadParameter's base, in typer's own copy of
#: click (typer._click, newer typers) or in click itself
_USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]
_F = TypeVar("_F", bound=Callable[..., Any])


class _Command(TyperCommand):
    """A command whose every usage error shows its usage line: click's parser raises the
    one for an option left without its value (``--port`` last) with no context, so it
    printed only "Option '--port' requires an argument.", no usage nor --help to try."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # a typer.Context
        try:
            return super().parse_args(ctx, args)
        except _USAGE_ERROR as exc:
            if getattr(exc, "ctx", ctx) is None:
                exc.ctx = ctx  # type: ignore[attr-defined]
            raise


class Commands(typer.Typer):
    """``typer.Typer`` for ``hibana`` and its groups: their commands are ``_Command``s."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[_F], _F]:
        kwargs.setdefault("cls", _Command)
        decorator: Callable[[_F], _F] = super().command(*args, **kwargs)
        return decorator


def app_option(folder: Path) -> Path:
    """``--app``'s folder; a usage error if it names a file (the app's function_app.py):
    its ``.hibana`` would be looked for inside the file, and the fix named would fail. So
    is a folder that does not exist (a typo): no host can run there, nor a store be."""
    if not folder.exists():
        raise typer.BadParameter(
            f"folder {folder} does not exist; pass the folder that holds the app's function_app.py"
        )
    if folder.is_file():
        raise typer.BadParameter(
            f"{folder} is a file; pass the folder that holds the app's function_app.py: "
            f"--app {shlex.quote(str(folder.parent))}"
        )
    return folder


StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="HIBANA_STORE",
        help="Store URL: postgresql://USER@HOST/DB to share state between hosts "
        "(default: sqlite in APP_DIR/.hibana/state.db).",
        show_envvar=True,
    ),
]


AppOpt = Annotated[
    Path,
    typer.Option(
        "--app", help="The app folder whose store to use (default: here).", callback=app_option
    ),
]


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def report(text: str) -> None:
    """``text`` on stderr: what goes on meanwhile (the host's start, a wait)."""
    with contextlib.suppress(OSError):  # a terminal that hung up: no one to tell
        print(text, file=sys.stderr, flush=True)


def usage(message: str) -> NoReturn:
    raise typer.BadParameter(message)


def check_store(store: str | None) -> None:
    """A usage error unless ``store`` (``--store`` or ``$HIBANA_STORE``) is a URL hibana
    reads: one it cannot is the command's mistake, not a store that failed."""
    from hibana.errors import StoreError
    from hibana.store import engine_for

    if store is not None:
        try:
            engine_for(store)
        except StoreError as exc:
            usage(str(exc))
