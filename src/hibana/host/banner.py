"""What the host tells its operator about the version of the app it serves: the banner
at start, and the lines a reload prints of the version it moved to.

Text only, built from values passed in: apart from the supervisor so that the wording can
change without touching the loop, and the loop can be read without the wording.
"""

from __future__ import annotations

import os

from hibana.host import open_files
from hibana.host.admin import AdminEndpoint
from hibana.host.zygote_handle import Zygote


def function_lines(zygote: Zygote, url: str) -> list[str]:
    """The banner's lines for the functions: each one's URL or trigger."""
    lines = []
    if not zygote.functions:
        lines.append("    (none: declare one with @app.http(...) in function_app.py)")
    for fn in zygote.functions:
        if fn["kind"] != "http":
            lines.append(f"    {fn['name']}: {fn['trigger']}")
            continue
        methods, *routes = fn["trigger"].split(" ")  # a mount serves several
        urls = ", ".join(url + route for route in routes)
        lines.append(f"    {fn['name']}: {methods} {urls}")
    return lines


def banner(
    zygote: Zygote,
    app_dir: str,
    url: str,
    store: str | None,
    admin: AdminEndpoint | None,
    open_file_limit: int,
) -> str:
    """What the host prints once the first version of the app serves: the app, its
    functions, the ``store`` (its display name) and the admin endpoint, where it listens."""
    from hibana import __version__

    assert zygote.scaling is not None
    lines = [
        f"hibana {__version__} · app {app_dir} · {zygote.scaling.describe()} "
        f"(prewarm {zygote.scaling.prewarm}) · pid {os.getpid()}",
        "",
        "Functions:",
        *function_lines(zygote, url),
    ]
    if store is not None:
        lines += ["", f"Store: {store}"]
    if admin is not None:
        lines += ["", f"Admin (hibana status): {admin.url}"]
        if admin.warning is not None:
            lines += ["", admin.warning]
    if open_file_limit < open_files.LOW:
        lines += [
            "",
            f"warning: the limit on open files is {open_file_limit}, the most this "
            "process could have: a worker holds fewer connections than that, the rest "
            "are closed unanswered; raise it (`ulimit -Hn`, LimitNOFILE= in a systemd unit)",
        ]
    lines += ["", f"Listening on {url} (Ctrl+C to stop)"]
    return "\n".join(lines)


def reloaded(fresh: Zygote, old: Zygote, url: str) -> str:
    """What a reload prints once ``fresh`` serves in place of ``old``: its functions, and
    its workers if they changed; the rest of the banner (store, admin, address) holds."""
    assert old.scaling is not None and fresh.scaling is not None
    lines = [f"Functions of generation {fresh.generation}:", *function_lines(fresh, url)]
    if fresh.scaling != old.scaling:
        lines.append(
            f"Workers: {fresh.scaling.describe()} (prewarm {fresh.scaling.prewarm}), "
            f"was {old.scaling.describe()} (prewarm {old.scaling.prewarm})"
        )
    return "\n".join(lines)
