"""The app's store as the host holds it: opened for the first version of the app that
needs it and kept across reloads, the duties (timers, queue watch) of the version that
serves, and the secrets every version names, checked and unsealed before it serves (a
missing one fails the start or the reload, not a worker at its first request).

Apart from the supervisor because it needs only the host's settings, its report line,
the output's redaction and the selector the loop waits on; and from the secrets package,
below the host in the layers, because it raises the host's errors.
"""

from __future__ import annotations

import selectors
import socket
from collections.abc import Callable

from hibana.errors import StoreError
from hibana.host.config import HostConfig, HostStartError
from hibana.host.store_duties import StoreDuties
from hibana.host.zygote_handle import Zygote
from hibana.store.base import CLOSE_TIMEOUT, Store


class AppStore:
    """The store of the app (once opened), its duties, and its secrets' values."""

    def __init__(
        self,
        config: HostConfig,
        report: Callable[[str], None],
        redact: Callable[[list[str]], None],
        sel: selectors.BaseSelector,
    ) -> None:
        self.config = config
        self.report = report
        self._redact = redact
        self._sel = sel
        #: Opened when the app has queue, timer or event functions, or ``--store`` names one.
        self.store: Store | None = None
        self.duties: StoreDuties | None = None
        #: A byte arrives on ``wake`` when messages wait (the loop's "queues").
        self.wake, self._wake_w = socket.socketpair()
        #: Values of the secrets the app's versions name: never written by the output.
        self._secret_values: set[str] = set()

    def open(self) -> Store:
        """The store, opened on the first call; raises HostStartError."""
        if self.store is None:
            from hibana.store import engine_for

            store = Store(engine_for(self.config.store_url))
            try:
                store.open()
            except StoreError as exc:
                raise HostStartError(str(exc)) from None
            self.store = store
            self._sel.register(self.wake, selectors.EVENT_READ, "queues")
        return self.store

    def check_secrets(self, zygote: Zygote) -> None:
        """Every secret a function names exists and the key opens: fail at start, not in
        a worker at its first request."""
        if not unseal_named(zygote.functions, self.open, self.config, self._secret_values):
            return
        self._redact(sorted(self._secret_values))  # what a function's subprocess prints too

    def start_duties(self, zygote: Zygote) -> None:
        """Check the app's secrets; open the store and start the timers and the queue
        watch, if the app has any; open a store named by ``--store`` in any case."""
        self.check_secrets(zygote)
        if not any(fn["kind"] in ("queue", "timer", "event") for fn in zygote.functions):
            if self.config.store is not None:
                # named on the command line: one that does not open is told at start (it
                # was never opened, so a typo or a server down went unsaid until a queue
                # function was added)
                self.open()
            return
        store = self.open()
        self.duties = StoreDuties(store, zygote.functions, self._wake_w, self.report)
        self.duties.start()

    def restart_duties(self, zygote: Zygote) -> None:
        """The timers and queue watch of ``zygote``'s version of the app."""
        self.stop_duties()
        try:
            self.start_duties(zygote)
        except HostStartError as exc:
            self.report(f"error: {exc}")

    def stop_duties(self) -> None:
        if self.duties is not None:
            self.duties.stop()
            self.duties = None

    def close(self) -> None:
        """Close the store, if it was opened, waiting up to ``CLOSE_TIMEOUT``."""
        if self.store is not None and not self.store.close(CLOSE_TIMEOUT):
            self.report(
                f"the store {self.store.display} did not answer within "
                f"{CLOSE_TIMEOUT:g}s; exiting without what was left to write "
                "(leases run out and their messages are delivered again)"
            )


def unseal_named(
    functions: list[dict[str, str]],
    open_store: Callable[[], Store],
    config: HostConfig,
    into: set[str],
) -> bool:
    """Add to ``into`` the value of every secret ``functions`` name; False if they name
    none (the store is then not opened). Raises HostStartError naming a secret that is not
    set, and the command that sets it, or why the key or the store failed."""
    wanted = {(fn["name"], name) for fn in functions for name in fn["secrets"]}
    if not wanted:
        return False
    import asyncio

    from hibana.secrets import SecretError, load_key, unseal

    store = open_store()
    try:
        sealed = asyncio.run(store.secrets(sorted({name for _, name in wanted})))
        for function, name in sorted(wanted):
            if name not in sealed:  # named before the key: with none set, there is no key
                # the store this host was given, or the command would set it elsewhere
                where = "" if config.store is None else f" --store '{store.display}'"
                if "***" in where:
                    where += " (with the password for ***)"
                raise SecretError(
                    f"function {function!r} names secret {name!r}, which is not set in "
                    f"{store.display}; set it with: hibana secrets set {name} "
                    f"--app {config.app_dir}{where}"
                )
        key = load_key()
        for _, name in sorted(wanted):
            into.add(unseal(key, name, sealed[name]))
    except (SecretError, StoreError) as exc:
        raise HostStartError(str(exc)) from None
    return True
