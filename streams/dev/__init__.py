"""Developer tools: ``churnpulse demo`` and the processes it runs.

May import anything below the CLI."""
