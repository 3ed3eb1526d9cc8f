"""Built-in example configs (``eventrunner run --example NAME``) and the code they need."""
