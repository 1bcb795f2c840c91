"""The hello function for Google's functions-framework, for bench/http.py.

Run: functions-framework --target hello --source bench/apps/ff_hello.py
"""


def hello(request: object) -> str:
    return "Hello world"
