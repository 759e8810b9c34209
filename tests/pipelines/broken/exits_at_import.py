"""An agent module that calls ``sys.exit(0)`` as it is imported: the loader must report it as
the module's failure, not exit quietly with status 0 as if the pipeline were fine."""

import sys

sys.exit(0)
