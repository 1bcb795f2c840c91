import hibana
import hibana_no_such_module  # noqa: F401

app = hibana.App()
