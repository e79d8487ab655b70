"""AnnData and SpatialData to arrays: images, patches, hand-made features, expression, gene vocabulary."""
