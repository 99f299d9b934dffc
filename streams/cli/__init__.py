"""The command line (``churnpulse``): parses arguments, builds the settings once, calls the process
or tool.

Top layer: may import everything in :mod:`streams`; nothing imports it."""
