"""bitcoin-supervisor: a sandboxed process supervisor for multiprocess Bitcoin."""
