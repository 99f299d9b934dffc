"""Developer tools: ``churnpulse demo`` and the processes it runs; an isolated pipeline of real
processes and crafted inputs for integration tests and benchmarks (``pipeline``, ``crafted``).

May import anything below the CLI."""
