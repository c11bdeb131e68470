"""``python -m targets.runtimes.litert SPEC``: the TFLite converter's child process (see
:func:`targets.runtimes.litert.convert.convert_child`); ``... --ahead FD``: the budget search's
helper process (see :mod:`targets.runtimes.litert.ahead`)."""

import sys

if sys.argv[1] == "--ahead":
    from targets.runtimes.litert.ahead import serve

    sys.exit(serve(int(sys.argv[2])))

from targets.runtimes.litert.convert import convert_child

sys.exit(convert_child(sys.argv[1]))
