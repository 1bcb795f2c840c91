import hibana

app = hibana.App()

SETTINGS: dict[str, str] = {}
DATABASE_URL = SETTINGS["DATABASE_URL"]
