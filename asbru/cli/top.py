def top() -> None:
    """(not ready)"""
