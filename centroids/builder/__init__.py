"""Building centroid sets from labelled folders: datasets, embedding workers, g_N documents."""
