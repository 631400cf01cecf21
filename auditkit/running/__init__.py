"""Running scenarios: the runner, each victim's job (planned, trained or loaded from the victim cache,
attacked), the executors, and the release gate."""
