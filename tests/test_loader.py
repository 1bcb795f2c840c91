"""``load_app`` against app folders written here, and ``HostConfig`` validation."""

from __future__ import annotations

import json
import sys
import textwrap
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hibana
from hibana import AppError, AppLoadError, ConfigError, RouteError
from hibana.host.config import HostConfig
from hibana.host.loader import load_app

WriteApp = Callable[..., Path]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Work in ``tmp_path``; afterwards, take back whatever loading put in sys.modules/sys.path."""
    monkeypatch.chdir(tmp_path)
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    saved_function_app = sys.modules.get("function_app")
    try:
        yield tmp_path
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(tmp_path.resolve())):
                del sys.modules[name]
        if saved_function_app is None:
            sys.modules.pop("function_app", None)
        else:
            sys.modules["function_app"] = saved_function_app


@pytest.fixture
def write_app(isolated: Path) -> WriteApp:
    """``write_app(source, **other_files)``: an ``app`` folder holding ``function_app.py``."""

    def write(source: str, **files: str) -> Path:
        folder = isolated / "app"
        folder.mkdir(exist_ok=True)
        (folder / "function_app.py").write_text(textwrap.dedent(source))
        for name, text in files.items():
            (folder / f"{name}.py").write_text(textwrap.dedent(text))
        return folder

    return write


# --- loading a good app --------------------------------------------------------------------


def test_loads_the_app_and_its_functions(write_app: WriteApp) -> None:
    folder = write_app(
        """\
        import hibana

        app = hibana.App()


        @app.http("/hello")
        def hello(req, ctx):
            return "hi"
        """
    )
    app = load_app(folder)
    assert isinstance(app, hibana.App)
    assert [s.name for s in app.functions] == ["hello"]
    assert app.functions[0].source == "app/function_app.py:6"
    assert str(folder.resolve()) in sys.path
    assert sys.modules["function_app"].app is app


def test_sibling_modules_are_importable(write_app: WriteApp) -> None:
    folder = write_app(
        """\
        import hibana
        from hibana_test_helpers import bp

        app = hibana.App()
        app.register(bp)
        """,
        hibana_test_helpers="""\
        import hibana

        bp = hibana.Blueprint()


        @bp.http("/from-helper")
        def helper(req, ctx):
            return "helper"
        """,
    )
    app = load_app(folder)
    assert [s.name for s in app.functions] == ["helper"]
    assert app.functions[0].source == "app/hibana_test_helpers.py:6"


def test_an_app_with_subscriptions_registered_on_app_is_served_with_one_events_endpoint(
    write_app: WriteApp,
) -> None:
    folder = write_app(
        """\
        import hibana

        billing = hibana.App()


        @billing.event("invoices")
        def invoiced(event, ctx):
            pass


        app = hibana.App()
        app.register(billing)
        """
    )
    app = load_app(folder)
    assert [s.name for s in app.functions] == ["invoiced", "runtime_events"]


def test_a_function_declared_after_the_app_was_loaded_is_refused(write_app: WriteApp) -> None:
    folder = write_app(
        """\
        import hibana

        app = hibana.App()
        """
    )
    app = load_app(folder)
    late = hibana.Blueprint()  # as a function would build one at its first request

    @late.http("/later")
    def later(req: hibana.Request, ctx: hibana.Context) -> str:
        return "late"

    for declare in (lambda: app.register(late), lambda: app.http("/later")(later)):
        with pytest.raises(AppError) as info:
            declare()
        assert str(info.value) == (
            f'function "later" at {late.functions[0].source} is declared after the host '
            "loaded the app from app/function_app.py, and the host reads its functions as "
            "it loads it: this one would never be served; declare it as "
            "app/function_app.py is imported, not later (in a function, say)"
        )
    with pytest.raises(AppError, match="after the host loaded the app"):
        app.webhook("/hooks/gh", provider="github", secret="gh", topic="pushes")
    assert not app.functions
    assert app.topics == ()  # the refused webhook feeds no topic


def test_a_zip_and_a_vendored_folder_in_the_app_import_as_python_has_them(
    write_app: WriteApp,
) -> None:
    """The app's own modules compile from their source (no stale .pyc); a zip on sys.path
    stays zipimport's (it was claimed, and its modules not found), and packages installed
    into a folder of the app (pip install -t vendor) keep their bytecode cache."""
    folder = write_app(
        """\
        import os
        import sys

        here = os.path.dirname(__file__)
        sys.path.insert(0, os.path.join(here, "deps.zip"))
        sys.path.insert(0, os.path.join(here, "vendor"))
        import zipped
        import vendored

        import hibana

        app = hibana.App()
        VALUES = (zipped.X, vendored.Y)
        """
    )
    with zipfile.ZipFile(folder / "deps.zip", "w") as deps:
        deps.writestr("zipped.py", "X = 'from the zip'\n")
    vendor = folder / "vendor"
    vendor.mkdir()
    (vendor / "vendored.py").write_text("Y = 'vendored'\n")
    (vendor / "vendored-1.0.dist-info").mkdir()
    load_app(folder)
    module = sys.modules["function_app"]
    assert module.VALUES == ("from the zip", "vendored")
    loaders = {name: type(sys.modules[name].__loader__).__name__ for name in ("zipped", "vendored")}
    assert loaders == {"zipped": "zipimporter", "vendored": "SourceFileLoader"}


def test_a_single_app_under_another_name_is_found(write_app: WriteApp) -> None:
    folder = write_app("import hibana\n\nmy_app = hibana.App()\n")
    assert load_app(folder) is sys.modules["function_app"].my_app


def test_the_one_named_app_wins_among_several(write_app: WriteApp) -> None:
    folder = write_app("import hibana\n\napp = hibana.App()\nother = hibana.App()\n")
    assert load_app(folder) is sys.modules["function_app"].app


def test_a_string_path_works(write_app: WriteApp) -> None:
    write_app("import hibana\napp = hibana.App()\n")
    assert isinstance(load_app("app"), hibana.App)


# --- errors --------------------------------------------------------------------------------


def test_missing_folder(isolated: Path) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app("nowhere")
    assert str(info.value) == "App folder nowhere does not exist; create one with `hibana new`"


def test_a_file_instead_of_a_folder(isolated: Path) -> None:
    (isolated / "function_app.py").write_text("")
    with pytest.raises(AppLoadError, match=r"App folder function_app\.py does not exist"):
        load_app("function_app.py")


def test_missing_function_app_py(isolated: Path) -> None:
    (isolated / "empty").mkdir()
    with pytest.raises(AppLoadError) as info:
        load_app("empty")
    assert str(info.value) == (
        "No function_app.py in empty; the app's functions go there "
        "(`hibana new empty` writes a starter)"
    )


def test_syntax_error_names_file_line_and_shows_the_line(write_app: WriteApp) -> None:
    folder = write_app("import hibana\n\ndef broken(:\n    pass\n")
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    message = str(info.value)
    assert message.startswith("app/function_app.py:3:")
    assert ": SyntaxError: " in message
    assert message.endswith("\n    def broken(:")
    assert "Traceback" not in message


def test_indentation_error(write_app: WriteApp) -> None:
    folder = write_app("import hibana\nif True:\nx = 1\n")
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value).startswith("app/function_app.py:3")
    assert "IndentationError: expected an indented block" in str(info.value)


def test_syntax_error_in_an_imported_sibling_names_that_file(write_app: WriteApp) -> None:
    folder = write_app("import hibana\nimport hibana_test_broken\n", hibana_test_broken="x = = 1\n")
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value).startswith("app/hibana_test_broken.py:1:")
    assert "SyntaxError" in str(info.value)


def test_import_of_a_missing_module_names_the_module_and_line(write_app: WriteApp) -> None:
    folder = write_app('"""My app."""\nimport hibana\nimport no_such_module_xyz\n')
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value) == (
        "app/function_app.py:3: importing function_app.py failed: "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'\n"
        "    import no_such_module_xyz"
    )


def test_missing_module_imported_by_a_sibling_points_at_the_sibling(write_app: WriteApp) -> None:
    folder = write_app(
        "import hibana\nfrom hibana_test_db import connect\n",
        hibana_test_db="import os\n\nimport psycopg_not_installed\n",
    )
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value) == (
        "app/hibana_test_db.py:3: importing function_app.py failed: "
        "ModuleNotFoundError: No module named 'psycopg_not_installed'\n"
        "    import psycopg_not_installed"
    )


def test_module_that_raises_at_import(write_app: WriteApp) -> None:
    folder = write_app(
        """\
        import os

        SETTING = os.environ["HIBANA_TEST_SURELY_UNSET_VARIABLE"]
        """
    )
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value) == (
        "app/function_app.py:3: importing function_app.py failed: "
        "KeyError: 'HIBANA_TEST_SURELY_UNSET_VARIABLE'\n"
        '    SETTING = os.environ["HIBANA_TEST_SURELY_UNSET_VARIABLE"]'
    )


def test_module_that_calls_sys_exit(write_app: WriteApp) -> None:
    folder = write_app("import sys\nsys.exit(3)\n")
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value) == (
        "app/function_app.py:2: importing function_app.py failed: SystemExit: 3\n    sys.exit(3)"
    )


def test_no_app_defined(write_app: WriteApp) -> None:
    folder = write_app("import hibana\n\nbp = hibana.Blueprint()\n")
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value) == (
        "app/function_app.py defines no hibana.App, only the hibana.Blueprint bp (line 3), "
        "which no App serves; add `app = hibana.App()` and `app.register(bp)`"
    )


def test_several_apps_and_none_named_app(write_app: WriteApp) -> None:
    folder = write_app("import hibana\n\nweb = hibana.App()\nadmin = hibana.App()\n")
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value) == (
        "app/function_app.py defines several Apps, admin (line 4), web (line 3), and none "
        "is named `app`; name the one to serve `app`, and register the others on it "
        "(app.register(other))"
    )


def test_route_error_inside_the_app_is_raised_as_is(write_app: WriteApp) -> None:
    folder = write_app(
        """\
        import hibana

        app = hibana.App()

        @app.http("/items/{id")
        def create(req, ctx):
            return "x"
        """
    )
    with pytest.raises(RouteError) as info:
        load_app(folder)
    assert str(info.value) == (
        'Route "/items/{id" in app/function_app.py:5 (create) has an unclosed "{"'
    )


def test_clash_inside_the_app_is_raised_as_is(write_app: WriteApp) -> None:
    folder = write_app(
        """\
        import hibana

        app = hibana.App()

        @app.http("/items")
        def one(req, ctx):
            return "1"

        @app.http("/items")
        def two(req, ctx):
            return "2"
        """
    )
    with pytest.raises(AppError) as info:
        load_app(folder)
    assert str(info.value) == (
        'Route "/items" GET in app/function_app.py:9 (two) is already served by "/items" in '
        "app/function_app.py:5 (one); change one route or method"
    )


def test_a_module_imported_under_two_names_is_refused(
    write_app: WriteApp, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m hibana serve app`` puts the folder above the app's on sys.path: a module
    importing ``app.core`` there ran core.py a second time, and its functions went to a
    second App that nothing served (a 404 each, and not a word)."""
    monkeypatch.syspath_prepend(str(isolated))
    folder = write_app(
        """\
        from core import app
        import orders
        """,
        __init__="",
        core="import hibana\napp = hibana.App()\n",
        orders="""\
        from app.core import app

        @app.http("/orders")
        def list_orders(req, ctx):
            return []
        """,
    )
    with pytest.raises(AppLoadError) as info:
        load_app(folder)
    assert str(info.value) == (
        "app/core.py is imported twice, as core and app.core, and each import ran it: the "
        "functions declared on what the second made (list_orders) would not be served; "
        "import it by one name, `import core` (the app folder is on sys.path)"
    )
    (folder / "orders.py").write_text(
        "from core import app\n\n@app.http('/orders')\ndef list_orders(req, ctx):\n    return []\n"
    )
    for name in ("orders", "app.core", "core"):
        sys.modules.pop(name, None)
    assert [s.name for s in load_app(folder).functions] == ["list_orders"]


def test_loading_twice_gives_a_fresh_module(write_app: WriteApp) -> None:
    folder = write_app("import hibana\napp = hibana.App()\n")
    first = load_app(folder)
    write_app(
        "import hibana\napp = hibana.App()\n@app.http('/new')\ndef new(req, ctx):\n    return ''\n"
    )
    second = load_app(folder)
    assert second is not first
    assert [s.name for s in second.functions] == ["new"]
    assert sys.path.count(str(folder.resolve())) == 1


# --- HostConfig ----------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    config = HostConfig(app_dir="app")
    assert config.port == 7071
    assert config.log_level == "info"


def test_json_round_trip() -> None:
    config = HostConfig(app_dir="app", port=0, threads=3, cancel_grace=0.5, log_level="debug")
    assert HostConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["threads"] == 3


@pytest.mark.parametrize("port", [0, 1, 65535])
def test_ports_in_range(port: int) -> None:
    assert HostConfig(app_dir="app", port=port).port == port


@pytest.mark.parametrize("port", [-1, 65536, 100000])
def test_port_out_of_range(port: int) -> None:
    with pytest.raises(ConfigError) as info:
        HostConfig(app_dir="app", port=port)
    assert str(info.value) == f"port {port} is not in 0..65535"


@pytest.mark.parametrize("port", ["8080", 80.5])
def test_port_that_is_not_an_integer(port: Any) -> None:
    """Like the other counts: a ConfigError naming the setting, not a TypeError or a pass."""
    with pytest.raises(ConfigError, match="port"):
        HostConfig(app_dir="app", port=port)


@pytest.mark.parametrize("name", ["threads", "max_body_bytes", "max_header_bytes"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True, "4", None])
def test_counts_must_be_whole_numbers_of_at_least_one(name: str, value: Any) -> None:
    if name == "threads" and value is None:  # not given: the App's threads=, or 40
        assert HostConfig(app_dir="app", threads=None).threads is None
        return
    with pytest.raises(ConfigError) as info:
        HostConfig(app_dir="app", **{name: value})
    assert str(info.value) == f"{name}={value!r} must be a whole number of at least 1"


@pytest.mark.parametrize(
    "name",
    [
        "shutdown_timeout",
        "cancel_grace",
        "concurrency_wait",
        "header_timeout",
        "body_timeout",
        "keep_alive_timeout",
    ],
)
@pytest.mark.parametrize("value", [-1, -0.1, True, "5", None])
def test_durations_must_be_seconds_zero_or_more(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        HostConfig(app_dir="app", **{name: value})
    assert str(info.value) == f"{name}={value!r} must be a number of seconds, 0 or more"


def test_nan_durations_are_rejected() -> None:
    """NaN passes ``value < 0``; ``--cancel-grace nan`` must not reach the host."""
    with pytest.raises(ConfigError) as info:
        HostConfig(app_dir="app", cancel_grace=float("nan"))
    assert str(info.value) == "cancel_grace=nan must be a number of seconds, 0 or more"


@pytest.mark.parametrize("value", [0, 0.0, 2.5, 10])
def test_durations_accept_zero_and_fractions(value: float) -> None:
    assert HostConfig(app_dir="app", cancel_grace=value).cancel_grace == value


def test_unknown_log_level() -> None:
    with pytest.raises(ConfigError) as info:
        HostConfig(app_dir="app", log_level="verbose")  # type: ignore[arg-type]
    assert str(info.value) == "log_level='verbose' is not one of debug, info, warning, error"


def test_config_is_immutable() -> None:
    config = HostConfig(app_dir="app")
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]
