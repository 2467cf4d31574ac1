"""Services that put the engine behind a network interface (the constitution judge as a reward)."""
