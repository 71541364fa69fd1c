def doctor() -> None:
    """(not ready)"""
