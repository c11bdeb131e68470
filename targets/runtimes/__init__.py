"""One module per runtime; each declares ``RUNTIME`` (see :class:`targets.runtime.Runtime`)."""
