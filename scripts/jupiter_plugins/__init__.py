"""Jupiter's in-repo Pants plugin: the ``create-worker`` and ``remove-worker`` goals."""
