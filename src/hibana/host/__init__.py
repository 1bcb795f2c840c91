"""The host: a supervisor that owns the socket, a zygote that imports the app once, and
workers forked from it that serve requests."""
