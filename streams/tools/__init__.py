"""Tools around the live path: the benchmark, the chaos runs, the demo, the offline evaluation,
the simulator's producer and the child processes they start."""
