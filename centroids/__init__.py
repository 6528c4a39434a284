"""Model of anfe: faces to embeddings to centroids to classification; storage, build, benchmark."""
