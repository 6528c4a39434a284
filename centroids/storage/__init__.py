"""The database (MongoDB or embedded montydb) and the centroid sets shipped with the package."""
