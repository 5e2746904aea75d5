"""`crmhub serve`: the HTTP endpoints, the scheduler and the delivery worker in one process."""
