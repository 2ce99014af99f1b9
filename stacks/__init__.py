"""CDK constructs (logical units) and the stacks that compose them."""
