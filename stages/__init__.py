"""One thin entry point per DVC stage: read params, call runtime + pipeline, write the stage's outs."""
