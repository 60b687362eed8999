"""Processing provider and algorithms: each algorithm gathers parameters and calls one core
function, so Processing, the CLI and the dock compute exactly the same thing."""
