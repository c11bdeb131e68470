"""``python -m targets.runtimes.litert SPEC``: the TFLite converter's child process (see
:func:`targets.runtimes.litert.convert.convert_child`)."""

import sys

from targets.runtimes.litert.convert import convert_child

sys.exit(convert_child(sys.argv[1]))
