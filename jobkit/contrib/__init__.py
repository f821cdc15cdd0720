"""Internal: jobkit's integrations with web frameworks, one subpackage each (:mod:`.django`)."""
