"""A test app that fails on import, so its vassal dies before serving and the Emperor blacklists it."""
print("crash: importing, about to fail", flush=True)
raise RuntimeError("crash: this app always fails on import")
