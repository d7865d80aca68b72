"""HTTP plumbing shared by the feature routers: errors, dependencies, pagination."""
