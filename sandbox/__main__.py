"""``python -m bitcoin_supervisor.sandbox``: the trampoline every component is launched
through (see ``_trampoline``)."""

from ._trampoline import main

main()
