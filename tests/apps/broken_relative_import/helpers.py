def greeting() -> str:
    return "hello"
