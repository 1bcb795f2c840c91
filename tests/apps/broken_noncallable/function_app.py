import hibana

app = hibana.App()

handler = app.http("/x")
handler(42)  # type: ignore[type-var]
