"""bench/coldstart.py's heavy app: the hello function behind a module level that imports
libraries a real app might (Flask, Jinja2, httpx, rich, pydantic and some of the stdlib's
bigger packages) and defines a pydantic model. About 200-300 ms of imports in a fresh
interpreter; bench/coldstart.py measures and prints the figure on each run.

Everything imported is installed with hibana's test and bench extras; nothing here is
used by the function, which only has to make the import cost real."""

import decimal
import email.mime.multipart
import http.client
import sqlite3
import xml.etree.ElementTree

import flask
import httpx
import jinja2
import pydantic
import rich.console
import rich.table

import hibana

app = hibana.App()


class Greeting(pydantic.BaseModel):
    name: str
    count: int = 1


#: Touch each import so a linter sees them used.
LIBRARIES = (
    decimal,
    email.mime.multipart,
    http.client,
    sqlite3,
    xml.etree.ElementTree,
    flask,
    httpx,
    jinja2,
    rich.console,
    rich.table,
)


@app.http("/hello", methods=["GET"])
def hello(req: hibana.Request, ctx: hibana.Context) -> str:
    return "Hello"
